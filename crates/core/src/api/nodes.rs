//! Our node protocol: farm nodes register, heartbeat, lease jobs, renew leases and report results.
//!
//! Leases make the queue at-least-once: a node that vanishes loses its lease at the deadline and
//! the job goes back (expiry runs on the cron and before every lease). Results are idempotent:
//! a result is keyed by its lease, so reporting it twice changes nothing.

use std::collections::HashMap;

use super::triggers::pull_enabled;
use super::{ApiError, ApiResponse, Call, Result, Service};
use crate::admin::RateLimiter;
use crate::farm::{DiscoveredRepository, LeasedDiscovery, ListedHash, PolledRefs, RefPollTarget};
use crate::forks::RefSyncState;
use crate::identity::token_lookup_key;
use crate::mirrors::{NextStep, PullMirror, RemoteMirror, UpdateOutcome, UpdateState};
use crate::nodes::{
    CONTACT_WRITE_INTERVAL_MS, CloneAccess, CloneAccessRequest, HeartbeatRequest, JobReport, LeaseRenewed,
    LeaseRequest, LeasedFork, LeasedJob, LeasedMirror, LeasedPull, LeasedRepository, NODE_TOKEN_PREFIX, NewNode,
    NodeDto, NodeParams, Outcome, RegisteredNode, ReleaseRequest, RenewRequest, RepositoryWork, ResultRecorded,
};
use crate::paging::BitbucketPage;
use crate::queue::Signals;
use crate::queue::{
    DEFAULT_LEASE_MS, EXPIRE_BATCH, Job, JobCompletion, JobKind, JobReason, JobState, MAX_LEASE_MS, MAX_LEASE_WAIT_MS,
    MIN_LEASE_MS, Topic,
};
use crate::registry::Repository;
use crate::store::Blobs;
use crate::store::port::Database;
use crate::store::{
    Crypto, DiscoveryOutcome, DiscoveryWrite, ForkOutcome, JobContext, NoticeWrite, Poll, PollAsked, Reported,
    SavedMirror, SyncRecord, UpstreamPollOutcome,
};
use crate::time::Timestamp;
use crate::urls::{GitUrl, StoredUrl};

fn lease_lost() -> ApiError {
    ApiError::Conflict("This lease is no longer held: the job was returned to the queue.".into())
}

/// Message recorded when a node stops answering mid-job.
const LEASE_EXPIRED: &str = "The farm node stopped responding before the update finished; the lease expired.";

/// The most protected branch rules a dry run reads (far more than projects keep; D1 binds
/// numbers as JavaScript doubles, so no unbounded sentinel is sent).
const MAX_PROTECTED_RULES: u64 = 10_000;

impl<D: Database, C: Crypto, S: Signals, L: RateLimiter, B: Blobs> Service<'_, D, C, S, L, B> {
    /// The authenticated node, or 401.
    pub(super) fn node<'c>(call: &'c Call<'_>) -> Result<&'c crate::nodes::FarmNode> {
        call.node.as_ref().ok_or(ApiError::Unauthorized)
    }

    /// A URL with its sealed credentials put back, for a node.
    pub(super) async fn unsealed(&self, url: &StoredUrl) -> Result<String> {
        self.unsealed_once(url, &mut HashMap::new()).await
    }

    /// [`Self::unsealed`], with each distinct sealed credential unsealed once across calls
    /// sharing `opened` (a farm's repositories share theirs).
    async fn unsealed_once(&self, url: &StoredUrl, opened: &mut HashMap<String, String>) -> Result<String> {
        let parsed =
            GitUrl::parse(&url.plain).map_err(|e| ApiError::Internal(format!("stored url unreadable: {e}")))?;
        let Some(sealed) = &url.sealed_userinfo else { return Ok(parsed.without_credentials()) };
        if let Some(open) = opened.get(sealed) {
            return Ok(parsed.with_userinfo(Some(open)));
        }
        let open = self.crypto.unseal(sealed).await?;
        let url = parsed.with_userinfo(Some(&open));
        opened.insert(sealed.clone(), open);
        Ok(url)
    }

    /// A lease length a node asked for, in the queue's bounds.
    fn lease_ms(seconds: Option<u64>) -> i64 {
        seconds
            .map_or(DEFAULT_LEASE_MS, |s| i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1000))
            .clamp(MIN_LEASE_MS, MAX_LEASE_MS)
    }

    pub(super) async fn register_node(&self, call: &Call<'_>) -> Result<ApiResponse> {
        call.principal()?;
        let name = call.input::<NodeParams>()?.name.filter(|n| !n.trim().is_empty());
        let name =
            name.ok_or_else(|| ApiError::Field { field: "name".into(), message: "A node name is required.".into() })?;
        if name.len() > 128 {
            return Err(ApiError::Field {
                field: "name".into(),
                message: "Node names are at most 128 characters.".into(),
            });
        }
        let (node, token) = self.create_node(&name).await?;
        Ok(ApiResponse::json(201, &RegisteredNode { node: NodeDto::from(&node), token }))
    }

    /// Registers a node named `name` (trimmed) with a new token: the node and its token.
    pub(super) async fn create_node(&self, name: &str) -> Result<(crate::nodes::FarmNode, String)> {
        let token = format!("{NODE_TOKEN_PREFIX}{}", self.random_hex(20)?);
        let node = self
            .store
            .insert_node(&NewNode {
                name: name.trim().to_owned(),
                lookup: token_lookup_key(&token),
                hash: self.crypto.sha256_hex(token.as_bytes()).await?,
                created_at: self.now,
            })
            .await?;
        Ok((node, token))
    }

    pub(super) async fn list_nodes(&self, call: &Call<'_>) -> Result<ApiResponse> {
        call.principal()?;
        let page = BitbucketPage::from_query(&call.query);
        let (nodes, more) = self.store.list_nodes(page.start, page.limit).await?;
        Ok(ApiResponse::json(200, &page.open(nodes.iter().map(NodeDto::from).collect(), more)))
    }

    /// A node is alive; it says where it serves clones (one round trip).
    pub(super) async fn heartbeat(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let node = Self::node(call)?;
        let asked: HeartbeatRequest = call.json()?;
        let clone_url = match asked.clone_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            Some(text) => {
                let bad = || ApiError::Field {
                    field: "cloneUrl".into(),
                    message: "cloneUrl must be an http(s) URL without credentials.".into(),
                };
                let url = GitUrl::parse(text).map_err(|_| bad())?;
                if !matches!(url.scheme(), "http" | "https") || url.has_credentials() {
                    return Err(bad());
                }
                Some(url.without_credentials().trim_end_matches('/').to_owned())
            }
            None => None,
        };
        let ssh_url = match asked.ssh_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            Some(text) => {
                let bad = || ApiError::Field {
                    field: "sshUrl".into(),
                    message: "sshUrl must be an ssh:// URL without a password.".into(),
                };
                let url = GitUrl::parse(text).map_err(|_| bad())?;
                if url.scheme() != "ssh" || url.userinfo().is_some_and(|u| u.contains(':')) {
                    return Err(bad());
                }
                Some(text.trim_end_matches('/').to_owned())
            }
            None => None,
        };
        if asked.links.len() > crate::mesh::MAX_LINKS {
            return Err(ApiError::Field {
                field: "links".into(),
                message: format!("At most {} links per heartbeat.", crate::mesh::MAX_LINKS),
            });
        }
        let links: Vec<crate::mesh::Link> = asked
            .links
            .iter()
            .map(|l| crate::mesh::Link {
                node_id: node.id,
                peer_id: l.peer_id.unwrap_or(0),
                reachable: l.reachable,
                round_trip_ms: l.round_trip_ms.map(|ms| ms.clamp(0, 3_600_000)),
                error: l.error.as_deref().map(|e| crate::urls::scrub_text(e).chars().take(500).collect()),
            })
            .collect();
        // Reads first, the one write last: a failed read leaves the node's record as it was.
        let log_filter = self.settings().await?.logs.node_filter();
        let peers = self.store.heartbeat(node.id, self.now, clone_url.as_deref(), ssh_url.as_deref(), &links).await?;
        let mut dto = NodeDto::from(node);
        dto.last_seen = Some(self.now.millis());
        let control_plane_key = self.crypto.control_plane_key().await.ok().map(|k| crate::hex::encode(&k));
        Ok(ApiResponse::json(200, &crate::nodes::HeartbeatAnswer { node: dto, log_filter, peers, control_plane_key }))
    }

    /// `POST …/nodes/clone-access` (nodes): whether the caller whose `Authorization` a node
    /// forwards may clone a repository from it — REPO_READ, or anonymous for a public one. One
    /// round trip for the repository and grants, plus the caller's lookup unless cached.
    pub(super) async fn clone_access(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let node = Self::node(call)?;
        let asked: CloneAccessRequest = call.json()?;
        let who = match asked.ssh_key.as_deref() {
            Some(key) => Some(self.ssh_key_principal(key).await?),
            None => match self.authenticate(None, asked.authorization.as_deref()).await? {
                super::Caller::User(who) if !who.as_ref().is_some_and(|p| p.scope.status_only) => who,
                // Node tokens and status tokens do not clone.
                _ => return Err(ApiError::Unauthorized),
            },
        };
        let hidden = || ApiError::not_found("Repository", "Repository does not exist.");
        let key = crate::store::RepositoryKey::Slug(&asked.project_key, &asked.slug);
        let (repo, grants) = self.store.repository_access(key, Self::user_id(who.as_ref())).await?;
        let repo = repo.ok_or_else(hidden)?;
        match Self::level_on_repository(who.as_ref(), &grants, &repo) {
            Some(_) => {
                let caller = self.crypto.sha256_hex(asked.caller_text().as_bytes()).await?;
                let signed =
                    crate::mesh::grant::clone_access_bytes(node.id, repo.id, &asked.project_key, &asked.slug, &caller);
                let signature = self.crypto.control_plane_sign(&signed).await.ok().map(|s| crate::hex::encode(&s));
                Ok(ApiResponse::json(200, &CloneAccess { repository_id: repo.id, signature }))
            }
            None if who.is_none() => Err(ApiError::Unauthorized),
            None => Err(hidden()),
        }
    }

    /// `POST …/nodes/copies` (nodes): which of the repositories a node holds copies of are gone
    /// (`{"removedRepositories": […]}`), one round trip.
    pub(super) async fn held_copies(&self, call: &Call<'_>) -> Result<ApiResponse> {
        Self::node(call)?;
        let held: crate::nodes::HeldCopies = call.json()?;
        if held.repository_ids.len() > crate::nodes::HELD_COPIES_PER_CALL {
            return Err(ApiError::Field {
                field: "repositoryIds".into(),
                message: format!("At most {} repository ids per call.", crate::nodes::HELD_COPIES_PER_CALL),
            });
        }
        let node = Self::node(call)?;
        let removed_repositories = self.store.copies_to_drop(node.id, &held.repository_ids).await?;
        Ok(ApiResponse::json(200, &crate::nodes::CopiesGone { removed_repositories }))
    }

    /// Returns expired leases to the queue (or gives up on them), recording the lost try on
    /// their mirrors, at most [`EXPIRE_BATCH`] per call (two round trips each). Run by the cron
    /// and whenever a node polls for work. Returns how many expired.
    pub async fn expire_leases(&self) -> Result<usize> {
        let expired = self.store.expired_leases(self.now, EXPIRE_BATCH).await?;
        self.return_expired(&expired).await?;
        if !expired.is_empty() {
            self.signals.notify(Topic::Queue).await;
        }
        Ok(expired.len())
    }

    async fn return_expired(&self, expired: &[Job]) -> Result<()> {
        for job in expired {
            let Some(lease_id) = job.lease_id.as_deref() else { continue };
            if job.kind == JobKind::MeshMove {
                self.expire_move(job, lease_id).await?;
                self.mark_queued();
                continue;
            }
            let context = self.store.job_context(job.id).await?;
            let outcome = UpdateOutcome::Error(LEASE_EXPIRED.into());
            let (completion, tracked) = self.conclude(job, Self::tracked(&context, self.now), &outcome);
            let saved = tracked.as_ref().map(Tracked::saved);
            self.store.finish_job(job.id, lease_id, completion, None, self.now, saved, None, None).await?;
            // Back in the queue (or closed for a waiting twin): nodes waiting for work look again.
            self.mark_queued();
        }
        Ok(())
    }

    /// Deletes finished jobs past the kept history (a bounded number per run, for the cron).
    pub async fn prune_job_history(&self) -> Result<u64> {
        Ok(self.store.prune_job_history(self.now).await?)
    }

    /// The mirror a job updates: its push mirror, or its repository's pull mirror (implicit
    /// settings if never configured). `None` if it is gone.
    fn tracked(context: &JobContext, now: Timestamp) -> Option<Tracked> {
        let job = context.job.as_ref()?;
        match job.kind {
            JobKind::PushMirror => context.remote_mirror.clone().map(Tracked::Push),
            // A fork's sync state is recorded apart (`fork_syncs`), not as a mirror's update state,
            // and a discovery's on its upstream server.
            JobKind::ForkSync | JobKind::Discover | JobKind::UpstreamPoll | JobKind::SendMail => None,
            JobKind::MigrationExport | JobKind::MigrationImport | JobKind::MeshMove | JobKind::SupportZip => None,
            JobKind::PullMirror => match &context.repository {
                Some(repo) if repo.upstream.is_some() => {
                    Some(Tracked::Pull(context.pull.clone().unwrap_or_else(|| PullMirror::implicit(repo.id, now))))
                }
                _ => None,
            },
        }
    }

    /// What a try's outcome means for the job and its mirror.
    fn conclude(
        &self,
        job: &Job,
        tracked: Option<Tracked>,
        outcome: &UpdateOutcome,
    ) -> (JobCompletion, Option<Tracked>) {
        let Some(mut tracked) = tracked else {
            // A fork sync or discovery that failed to run is tried again, with the mirrors' backoff;
            // a mail for longer (a mail server that is down must lose nothing).
            let retries = match job.kind {
                JobKind::ForkSync | JobKind::Discover => job.attempt < crate::mirrors::MAX_TRIES,
                JobKind::SendMail => Self::mail_retries(job),
                // The cron queues the next hash poll as soon as it is due again.
                JobKind::PullMirror | JobKind::PushMirror | JobKind::UpstreamPoll => false,
                JobKind::MigrationExport | JobKind::MigrationImport | JobKind::MeshMove | JobKind::SupportZip => false,
            };
            if retries && matches!(outcome, UpdateOutcome::Error(_)) {
                let wait = crate::mirrors::backoff_ms(job.attempt, self.config.retry_base_ms);
                return (JobCompletion::RetryAt(self.now.plus_millis(wait)), None);
            }
            // Done, or the mirror was deleted meanwhile: nothing left to record.
            return (JobCompletion::Done, None);
        };
        tracked.touch(self.now);
        let completion = match tracked.update().end(outcome, job.attempt, self.config.retry_base_ms, self.now) {
            NextStep::Done => JobCompletion::Done,
            NextStep::RetryAt(at) => JobCompletion::RetryAt(at),
            NextStep::GiveUp => JobCompletion::Failed,
        };
        (completion, Some(tracked))
    }

    /// A node asks for work, waiting up to `waitSeconds` (at most [`MAX_LEASE_WAIT_MS`]) for a
    /// job to become due: it is answered the moment one is queued (see [`Signals`]). Each look is
    /// one round trip when nothing is due (contact, expired leases and the lease in one batch);
    /// the same trip reads a leased job's context, and one more marks its mirror started.
    pub(super) async fn lease_job(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let asked: LeaseRequest = call.json()?;
        let wait_ms = i64::try_from(asked.wait_seconds.unwrap_or(0)).unwrap_or(i64::MAX).saturating_mul(1000);
        let until = self.now.plus_millis(wait_ms.min(MAX_LEASE_WAIT_MS));
        let mut look = self.at(self.clock());
        // The queue's generation is read only once a look found nothing (a busy node's lease
        // costs no signal), and the look is then repeated: a job queued before the read is found
        // by that look, one queued after it wakes the wait.
        let mut seen: Option<u64> = None;
        loop {
            let answer = look.lease_once(call, &asked).await;
            if look.queued.get() {
                self.mark_queued();
            }
            let (leased, next_due) = answer?;
            if let Some(job) = leased {
                return Ok(ApiResponse::json(200, &job));
            }
            let answer = ApiResponse::empty(204);
            if until <= look.now {
                return Ok(answer);
            }
            let Some(generation) = seen else {
                match self.signals.generation(Topic::Queue).await {
                    Some(g) => seen = Some(g),
                    None => return Ok(answer),
                }
                look = self.at(self.clock());
                continue;
            };
            // Until the wait is over, or a retry or lease deadline makes a job due by itself.
            let wake = next_due.map_or(until.millis(), |due| due.min(until.millis()));
            let remaining = wake - look.now.millis();
            match self.signals.wait(Topic::Queue, generation, remaining.max(1)).await {
                Some(g) => seen = Some(g),
                None => return Ok(answer),
            }
            look = self.at(self.clock());
        }
    }

    /// One look for work (see [`Self::lease_job`]), and when a job next becomes due by itself.
    async fn lease_once(&self, call: &Call<'_>, asked: &LeaseRequest) -> Result<(Option<LeasedJob>, Option<i64>)> {
        self.lease_after(call, asked, None).await
    }

    /// When a lease made now for `asked` ends unless renewed.
    fn lease_deadline(&self, asked: &LeaseRequest) -> Timestamp {
        self.now.plus_millis(Self::lease_ms(asked.lease_seconds))
    }

    /// What a poll for `asked` sends, under a new lease id.
    fn poll_asked<'l>(&self, call: &Call<'_>, asked: &LeaseRequest, lease_id: &'l str) -> Result<PollAsked<'l>> {
        Ok(PollAsked {
            node_id: Self::node(call)?.id,
            lease_id,
            now: self.now,
            deadline: self.lease_deadline(asked),
            // `sync <repo>` on a node works through one repository's jobs only.
            repository: asked.repository_id,
            contact_since: self.now.plus_millis(-CONTACT_WRITE_INTERVAL_MS),
            expired_limit: EXPIRE_BATCH,
        })
    }

    /// [`Self::lease_once`], whose first poll may already have been made (with a report: its
    /// lease id and what it found).
    async fn lease_after(
        &self,
        call: &Call<'_>,
        asked: &LeaseRequest,
        mut polled: Option<(String, Poll)>,
    ) -> Result<(Option<LeasedJob>, Option<i64>)> {
        let node = Self::node(call)?;
        // A job whose repository or mirror vanished (or was disabled) is closed and the next one tried.
        for _ in 0..8 {
            let (lease_id, poll) = match polled.take() {
                Some(first) => first,
                None => {
                    let lease_id = self.random_hex(16)?;
                    let poll = self.store.poll_for_job_asked(&self.poll_asked(call, asked, &lease_id)?).await?;
                    (lease_id, poll)
                }
            };
            let lease_id = lease_id.as_str();
            let deadline = self.lease_deadline(asked);
            // Expired leases go back to the queue; if nothing else was due, the next try may lease one.
            self.return_expired(&poll.expired).await?;
            let Some(job) = poll.leased else {
                if poll.expired.is_empty() {
                    return Ok((None, poll.next_due));
                }
                continue;
            };
            let context = match poll.context {
                Some(context) => context,
                None => self.store.job_context_of(job.id, Some(job.kind)).await?,
            };
            // Discoveries and fork syncs are not a mirror's update: their leases carry their own part.
            let own = match job.kind {
                // A hash poll lists the same server with the same token as a discovery.
                JobKind::Discover | JobKind::UpstreamPoll => {
                    Some(self.leased_discovery_job(&job, lease_id, deadline.millis(), &context).await?)
                }
                JobKind::ForkSync => Some(self.leased_fork_job(&job, lease_id, deadline.millis(), &context).await?),
                JobKind::SendMail => {
                    match self.leased_mail_job(call, &job, lease_of(&job, lease_id, deadline.millis())).await? {
                        Ok(body) => Some(Some(body)),
                        Err(why) => {
                            // It cannot be sent at all: closed as failed, saying why.
                            let reported = Reported::outcome_only(Outcome::Error.as_str(), &why);
                            let completion = JobCompletion::Failed;
                            self.store
                                .finish_job(job.id, lease_id, completion, Some(reported), self.now, None, None, None)
                                .await?;
                            continue;
                        }
                    }
                }
                JobKind::MigrationExport | JobKind::MigrationImport => {
                    Some(self.leased_migration_job(call, &job, lease_of(&job, lease_id, deadline.millis())).await?)
                }
                JobKind::PullMirror | JobKind::PushMirror => None,
                JobKind::MeshMove => Some(self.leased_move_job(&job, lease_id, deadline.millis(), node).await?),
                JobKind::SupportZip => Some(Some(LeasedJob {
                    support_zip: Some(crate::mesh::LeasedSupportZip {
                        id: job.payload.as_deref().and_then(|p| p.parse().ok()).unwrap_or_default(),
                    }),
                    ..lease_of(&job, lease_id, deadline.millis())
                })),
            };
            match own {
                Some(Some(body)) => return Ok((Some(body), None)),
                Some(None) => {
                    self.store
                        .finish_job(job.id, lease_id, JobCompletion::Done, None, self.now, None, None, None)
                        .await?;
                    continue;
                }
                None => {}
            }
            let tracked = Self::tracked(&context, self.now).filter(Tracked::enabled);
            let (Some(repo), Some(mut tracked)) = (context.repository.clone(), tracked) else {
                self.store.finish_job(job.id, lease_id, JobCompletion::Done, None, self.now, None, None, None).await?;
                continue;
            };
            // A poll may find nothing to do, so it does not mark the mirror started.
            if job.reason != JobReason::Poll {
                tracked.update().begin(self.now);
                tracked.touch(self.now);
                self.store.record_update(tracked.saved(), Some((job.id, lease_id))).await?;
            }
            let body = self.leased_job(&job, lease_id, deadline.millis(), &repo, &context, &tracked).await?;
            return Ok((Some(body), None));
        }
        Ok((None, None))
    }

    async fn leased_job(
        &self,
        job: &Job,
        lease_id: &str,
        deadline: i64,
        repo: &Repository,
        context: &JobContext,
        tracked: &Tracked,
    ) -> Result<LeasedJob> {
        let (pull, remote_mirror) = match tracked {
            Tracked::Pull(p) => (p.clone(), None),
            Tracked::Push(mirror) => (
                context.pull.clone().unwrap_or_else(|| PullMirror::implicit(repo.id, self.now)),
                Some(self.leased_mirror(mirror).await?),
            ),
        };
        let mut repository = self.leased_repository(repo, pull, context.upstream_fingerprint.clone()).await?;
        repository.protected_branches =
            crate::mirrors::protected::effective_patterns(&context.protected_branches, &repo.default_branch);
        Ok(LeasedJob {
            repository: Some(repository),
            remote_mirror,
            recreate: context.recreate,
            hooks: crate::hooks::applicable(job.kind, &context.hooks),
            ..lease_of(job, lease_id, deadline)
        })
    }

    /// A leased discovery or upstream poll as the node gets it: the upstream server, its token
    /// and its settings, and for a poll of an upstream that publishes no content hashes, the
    /// farm repositories whose refs the node lists (one more round trip); `None` if the server
    /// was removed meanwhile.
    async fn leased_discovery_job(
        &self,
        job: &Job,
        lease_id: &str,
        deadline: i64,
        context: &JobContext,
    ) -> Result<Option<LeasedJob>> {
        let Some(upstream) = &context.upstream else { return Ok(None) };
        let token = match &upstream.token_sealed {
            Some(sealed) => Some(self.crypto.unseal(sealed).await?),
            None => None,
        };
        let ref_poll = match job.kind {
            JobKind::UpstreamPoll => match self.store.ref_poll_targets(&upstream.id).await? {
                Some(targets) => Some(self.ref_poll_targets(targets).await?),
                None => None,
            },
            _ => None,
        };
        Ok(Some(LeasedJob {
            ref_poll,
            discovery: Some(LeasedDiscovery {
                upstream_id: upstream.id.clone(),
                kind: upstream.kind,
                api_base_url: upstream.api_base_url.clone(),
                token,
                mode: upstream.settings.mode,
                project_ids: upstream.settings.project_ids.clone(),
            }),
            ..lease_of(job, lease_id, deadline)
        }))
    }

    /// A ref poll's repositories as the node gets them, with their upstream credentials.
    async fn ref_poll_targets(&self, targets: Vec<(i64, StoredUrl)>) -> Result<Vec<RefPollTarget>> {
        let mut opened = HashMap::new();
        let mut out = Vec::with_capacity(targets.len());
        for (repository_id, url) in targets {
            out.push(RefPollTarget { repository_id, url: self.unsealed_once(&url, &mut opened).await? });
        }
        Ok(out)
    }

    /// A leased fork sync as the node gets it; `None` if there is nothing to do (the fork, its
    /// sync settings or its origin are gone, or sync was switched off meanwhile).
    async fn leased_fork_job(
        &self,
        job: &Job,
        lease_id: &str,
        deadline: i64,
        context: &JobContext,
    ) -> Result<Option<LeasedJob>> {
        let (Some(repo), Some(fork), Some(origin)) = (&context.repository, &context.fork, &context.origin) else {
            return Ok(None);
        };
        // Switched off, or a personal fork whose owner lost the origin (seed 001): nothing runs.
        if !fork.enabled || !fork.owner_reads_origin {
            return Ok(None);
        }
        let action = match job.payload.as_deref() {
            // Read through the lenient field reader: a derived deserializer would cost the Worker bytes.
            Some(text) => Some(
                serde_json::from_str(text)
                    .ok()
                    .and_then(super::Fields::from_json)
                    .map(|f| <crate::forks::ForkAction as super::FromFields>::from_fields(&f))
                    .transpose()
                    .map_err(|e| ApiError::Internal(format!("job {} payload unreadable: {e}", job.id)))?
                    .ok_or_else(|| ApiError::Internal(format!("job {} payload is not an object", job.id)))?,
            ),
            None => None,
        };
        let origin_pull = context.origin_pull.clone().unwrap_or_else(|| PullMirror::implicit(origin.id, self.now));
        let fork_pull = PullMirror::implicit(repo.id, self.now);
        Ok(Some(LeasedJob {
            repository: Some(self.leased_repository(repo, fork_pull, None).await?),
            fork: Some(LeasedFork {
                url: self.unsealed(&fork.url).await?,
                origin: self.leased_repository(origin, origin_pull, context.origin_fingerprint.clone()).await?,
                action,
            }),
            hooks: crate::hooks::applicable(job.kind, &context.hooks),
            ..lease_of(job, lease_id, deadline)
        }))
    }

    /// A repository as nodes see it: with its upstream's credentials and pull rules.
    pub(super) async fn leased_repository(
        &self,
        repo: &Repository,
        pull: PullMirror,
        upstream_fingerprint: Option<String>,
    ) -> Result<LeasedRepository> {
        let upstream_url = match &repo.upstream {
            Some(url) => Some(self.unsealed(url).await?),
            None => None,
        };
        Ok(LeasedRepository {
            id: repo.id,
            project_key: repo.project.key.clone(),
            slug: repo.slug.clone(),
            default_branch: repo.default_branch.clone(),
            upstream_url,
            upstream_fingerprint,
            protected_branches: Vec::new(),
            pull: LeasedPull {
                overwrite_diverged_branches: pull.mirror_overwrites_diverged_branches,
                only_protected_branches: pull.only_mirror_protected_branches,
                mirror_branch_regex: pull.mirror_branch_regex,
            },
        })
    }

    /// A push mirror as nodes see it: with its credentials (an SSH-key mirror's seed and known
    /// hosts too) and push rules.
    async fn leased_mirror(&self, mirror: &RemoteMirror) -> Result<LeasedMirror> {
        let ssh = match (mirror.auth_method, &mirror.ssh) {
            (crate::mirrors::AuthMethod::SshPublicKey, Some(ssh)) => Some(crate::nodes::LeasedSsh {
                private_seed: self.crypto.unseal(&ssh.sealed_seed).await?,
                known_hosts: ssh.known_hosts.clone(),
            }),
            _ => None,
        };
        Ok(LeasedMirror {
            id: mirror.id,
            url: self.unsealed(&mirror.url).await?,
            keep_divergent_refs: mirror.keep_divergent_refs,
            only_protected_branches: mirror.only_protected_branches,
            mirror_branch_regex: mirror.mirror_branch_regex.clone(),
            ssh,
        })
    }

    /// Keeps the host key a node accepted on an SSH-key mirror's first push (one more round
    /// trip, that once), unless the mirror has known hosts by now. Lines that do not read are
    /// dropped: the next push learns again.
    async fn learn_host_key(&self, job: &Job, context: &JobContext, learned: Option<&str>) -> Result<()> {
        let (Some(learned), Some(mirror)) = (learned, context.remote_mirror.as_ref()) else { return Ok(()) };
        let unknown = mirror.ssh.as_ref().is_some_and(|s| s.known_hosts.is_none());
        if job.kind != JobKind::PushMirror || !unknown {
            return Ok(());
        }
        let Ok(hosts) = crate::ssh::parse_known_hosts(learned) else { return Ok(()) };
        if hosts.is_empty() {
            return Ok(());
        }
        let mut fingerprints = Vec::with_capacity(hosts.len());
        for host in &hosts {
            fingerprints.push(self.ssh_fingerprint(&host.key).await?);
        }
        let lines: Vec<String> = hosts.iter().map(crate::ssh::KnownHost::to_line).collect();
        self.store.learn_host_key(mirror.id, &lines.join("\n"), &fingerprints.join("\n")).await?;
        Ok(())
    }

    /// `GET …/repos/{id}/work` (nodes only): everything a sync of the repository would do — its
    /// upstream and pull rules, and each enabled push mirror with credentials — without leasing
    /// anything, for `plan <repo>`.
    pub(super) async fn repository_work(&self, call: &Call<'_>) -> Result<ApiResponse> {
        Self::node(call)?;
        let hidden = || ApiError::not_found("Repository", "Repository does not exist.");
        let key = Self::gitlab_key(call.params.raw("repositoryId")).ok_or_else(hidden)?;
        let repo = self.store.repository_access(key.as_key(), None).await?.0.ok_or_else(hidden)?;
        let (pull, configured) = self.pull_mirror_of(&repo).await?;
        let pull_enabled = pull_enabled(configured.then_some(&pull), repo.upstream.is_some());
        let mut mirrors = Vec::new();
        for m in self.store.enabled_remote_mirrors(repo.id).await? {
            mirrors.push(self.leased_mirror(&m).await?);
        }
        let fingerprint = self.store.triggers(repo.id).await?.upstream_fingerprint;
        let mut repository = self.leased_repository(&repo, pull, fingerprint).await?;
        let (rules, _) = self.store.protected_branches(repo.id, None, 0, MAX_PROTECTED_RULES).await?;
        let names: Vec<String> = rules.into_iter().map(|r| r.name).collect();
        repository.protected_branches = crate::mirrors::protected::effective_patterns(&names, &repo.default_branch);
        Ok(ApiResponse::json(200, &RepositoryWork { repository, pull_enabled, mirrors }))
    }

    /// The job named in the path and its context (one round trip), if the node holds (or last
    /// held) the lease `lease_id`.
    async fn leased(&self, call: &Call<'_>, lease_id: &str) -> Result<(Job, JobContext)> {
        let node = Self::node(call)?;
        let hidden = || ApiError::not_found("Job", "Job does not exist.");
        let id: i64 = call.params.raw("jobId").parse().map_err(|_| hidden())?;
        let context = self.store.job_context(id).await?;
        let job = context.job.clone().ok_or_else(hidden)?;
        if job.lease_id.as_deref() != Some(lease_id) || job.lease_owner != Some(node.id) {
            return Err(lease_lost());
        }
        Ok((job, context))
    }

    /// Extends a lease: one round trip while it is held.
    pub(super) async fn renew_job(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let node = Self::node(call)?;
        let asked: RenewRequest = call.json()?;
        let hidden = || ApiError::not_found("Job", "Job does not exist.");
        let id: i64 = call.params.raw("jobId").parse().map_err(|_| hidden())?;
        let deadline = self.now.plus_millis(Self::lease_ms(asked.lease_seconds));
        if self.store.renew_lease(id, node.id, &asked.lease_id, deadline).await? {
            return Ok(ApiResponse::json(200, &LeaseRenewed { lease_deadline: deadline.millis() }));
        }
        // Not renewed: say whether the job is unknown or the lease lost.
        self.store.job(id).await?.ok_or_else(hidden)?;
        Err(lease_lost())
    }

    /// A node reports a try: two round trips (the job's context; the outcome recorded, with the
    /// upstream's fingerprint for pulls, in one batch that also answers the job's new state). A
    /// report that asks for the next job (`next`) looks for it in that same batch, so a busy
    /// node's result and next lease cost three (the third marks the next mirror started).
    pub(super) async fn report_result(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let report: JobReport = call.json()?;
        let (job, context) = self.leased(call, &report.lease_id).await?;
        if job.kind == JobKind::MeshMove && job.state == JobState::Leased {
            return self.report_move(call, job, &report).await;
        }
        let outcome = report.update_outcome();
        let mut tracked = Self::tracked(&context, self.now);
        if job.state != JobState::Leased {
            // Reported before under this lease: nothing changes, the current state is the answer.
            let update_status = tracked.as_mut().map(|t| t.update().status);
            return Ok(ApiResponse::json(
                200,
                &ResultRecorded { job, update_status, removed_repositories: Vec::new(), next: None },
            ));
        }
        let (completion, tracked) = self.conclude(&job, tracked, &outcome);
        let pulled =
            job.kind == JobKind::PullMirror && matches!(outcome, UpdateOutcome::Pushed | UpdateOutcome::Diverged(_));
        let fingerprint = report.fingerprint.as_deref().filter(|_| pulled).zip(job.repository_id);
        let fingerprint = fingerprint.map(|(f, id)| (id, f));
        let saved = tracked.as_ref().map(Tracked::saved);
        let message = crate::urls::scrub_text(&report.message);
        let fork_refs: Vec<(String, RefSyncState)> =
            report.fork_refs.iter().flatten().map(|r| (r.id.clone(), r.state)).collect();
        let fork = (job.kind == JobKind::ForkSync).then(|| {
            let synced = report.fork_refs.is_some() && report.outcome != Outcome::Error;
            let error = (report.outcome == Outcome::Error).then_some(message.as_str());
            (job.repository_id.unwrap_or_default(), ForkOutcome { synced, refs: &fork_refs, error })
        });
        let sync_record = job.repository_id.filter(|_| job.kind == JobKind::PullMirror).map(|repository_id| {
            let succeeded = matches!(report.outcome, Outcome::Pushed | Outcome::Unchanged);
            SyncRecord {
                repository_id,
                succeeded,
                error: (!succeeded).then_some(message.as_str()),
                content_hash: report.content_hash.as_deref().filter(|h| is_sha256_hex(h)),
            }
        });
        // A discovery's listing, kept to the selected projects and to clone URLs the farm may reach.
        let listed: Vec<DiscoveredRepository> = report
            .discovered
            .iter()
            .flatten()
            .filter(|r| GitUrl::parse(&r.clone_url).is_ok_and(|u| u.check_outbound(&self.config.allowed_hosts).is_ok()))
            .cloned()
            .collect();
        let upstream = context.upstream.as_ref().filter(|_| job.kind == JobKind::Discover);
        let sealed_userinfo = match upstream.and_then(|u| u.token_sealed.as_deref().map(|t| (u.kind, t))) {
            Some((kind, sealed)) => {
                let token = self.crypto.unseal(sealed).await?;
                Some(self.crypto.seal(&crate::farm::token_userinfo(kind, &token)).await?)
            }
            None => None,
        };
        let plan = upstream.map(|u| crate::farm::plan_discovery(&u.settings, &context.farm_entries, &listed));
        let discovery = match (upstream, &plan) {
            (Some(u), Some(plan)) if report.outcome == Outcome::Pushed && report.discovered.is_some() => {
                Some(DiscoveryOutcome::Listed(DiscoveryWrite {
                    upstream_id: &u.id,
                    plan,
                    sealed_userinfo: sealed_userinfo.as_deref(),
                }))
            }
            (Some(u), _) => Some(DiscoveryOutcome::Failed(&u.id, message.as_str())),
            (None, _) => None,
        };
        let reported_discovery = discovery.as_ref().map(|d| matches!(d, DiscoveryOutcome::Listed(_)));
        // A hash poll's listing (well-formed entries only), or the upstream's refusal to publish one.
        let listed_hashes: Vec<ListedHash> =
            report.content_hashes.iter().flatten().filter(|h| h.is_well_formed()).cloned().collect();
        // A ref poll's listing: well-formed fingerprints (or none: not listed, so pulled).
        let polled_refs: Vec<PolledRefs> = report
            .polled_refs
            .iter()
            .flatten()
            .map(|p| PolledRefs {
                repository_id: p.repository_id,
                fingerprint: p.fingerprint.clone().filter(|f| is_sha256_hex(f)),
            })
            .collect();
        let upstream_poll = match context.upstream.as_ref().filter(|_| job.kind == JobKind::UpstreamPoll) {
            Some(u) if report.outcome == Outcome::Pushed && report.content_hashes.is_some() => {
                Some(UpstreamPollOutcome::HashesListed(&u.id, &listed_hashes))
            }
            Some(u) if report.outcome == Outcome::Pushed && report.polled_refs.is_some() => {
                Some(UpstreamPollOutcome::RefsListed(&u.id, &polled_refs))
            }
            Some(u) if report.hashes_unpublished => Some(UpstreamPollOutcome::HashesUnpublished(&u.id)),
            _ => None,
        };
        let upstream_listed =
            matches!(upstream_poll, Some(UpstreamPollOutcome::HashesListed(..) | UpstreamPollOutcome::RefsListed(..)));
        let notice = self.report_notice(&job, &context, &report, &message).await?;
        let notice_write =
            notice.as_ref().map(|(target, watch, mail)| NoticeWrite { target, watch, mail: mail.as_deref() });
        let reported = Reported {
            outcome: report.outcome.as_str(),
            message: &message,
            fork,
            sync_record,
            discovery,
            upstream_poll,
            notice: notice_write,
        };
        // A node that asks for its next job with its result saves a request per job, and the
        // first look for that job goes in the result's own batch.
        let next_lease_id = report.next.as_ref().map(|_| self.random_hex(16)).transpose()?;
        let next = match (&report.next, &next_lease_id) {
            (Some(asked), Some(lease_id)) => Some(self.poll_asked(call, asked, lease_id)?),
            _ => None,
        };
        let (after, polled) = self
            .store
            .finish_job(
                job.id,
                &report.lease_id,
                completion,
                Some(reported),
                self.now,
                saved,
                fingerprint,
                next.as_ref(),
            )
            .await?;
        let (job, removed_repositories) = after.ok_or_else(lease_lost)?;
        self.learn_host_key(&job, &context, report.learned_host_key.as_deref()).await?;
        // Requests wait for some kinds of job (`wait_for_job`): they read this one now.
        if job.kind.is_awaited() {
            self.signals.notify(Topic::Results).await;
        }
        // Nodes waiting for work look again if this result queued any: a retry, a pull that found
        // new content (pushes and fork syncs follow), a discovery (first syncs), an upstream poll (the
        // pulls of what moved). An unchanged poll queues nothing and wakes nobody.
        let queued_more = job.state == JobState::Queued
            || notice.as_ref().is_some_and(|(_, _, mail)| mail.is_some())
            || (pulled && report.fingerprint.is_some())
            || matches!(reported_discovery, Some(true))
            || upstream_listed;
        if queued_more {
            self.mark_queued();
        }
        let update_status = tracked.map(|mut t| t.update().status);
        let next = match (&report.next, next_lease_id.zip(polled)) {
            (Some(asked), first) => self.lease_after(call, asked, first).await?.0,
            (None, _) => None,
        };
        Ok(ApiResponse::json(200, &ResultRecorded { job, update_status, removed_repositories, next }))
    }

    /// What notifications make of a report (see [`crate::mail::notify`]): a push or pull mirror's
    /// try succeeded or failed; a fork's sync conflicted, or left refs diverged (or none).
    async fn report_notice(
        &self,
        job: &Job,
        context: &JobContext,
        report: &JobReport,
        message: &str,
    ) -> Result<Option<(String, crate::mail::notify::Watch, Option<String>)>> {
        use crate::mail::notify::{Cause, Notice, Signal};
        let signal = match job.kind {
            JobKind::PushMirror | JobKind::PullMirror => super::mail::mirror_signal(&report.update_outcome()),
            JobKind::ForkSync if report.outcome == Outcome::Conflict => Some(Signal::Event(Cause::ForkConflict)),
            JobKind::ForkSync => report.fork_refs.as_ref().map(|refs| {
                Signal::Condition(Cause::ForkDiverged, refs.iter().any(|r| r.state == RefSyncState::Diverged))
            }),
            JobKind::Discover | JobKind::UpstreamPoll | JobKind::SendMail => None,
            JobKind::MigrationExport | JobKind::MigrationImport | JobKind::MeshMove | JobKind::SupportZip => None,
        };
        let repository = context.repository.as_ref();
        let about = || {
            let subject = repository.map(|r| format!("{}/{}", r.project.key, r.slug)).unwrap_or_default();
            let what = match (job.kind, &context.remote_mirror) {
                (JobKind::PushMirror, Some(m)) => format!("push mirror to {}", m.url.masked),
                (JobKind::PushMirror, None) => "push mirror".to_owned(),
                (JobKind::ForkSync, _) => "fork sync".to_owned(),
                _ => "pull mirror".to_owned(),
            };
            let detail = match &report.fork_refs {
                Some(refs) if report.outcome != Outcome::Conflict => refs
                    .iter()
                    .filter(|r| r.state == RefSyncState::Diverged)
                    .map(|r| r.id.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => message.to_owned(),
            };
            let failures = context.watch.failures.saturating_add(1);
            Notice { cause: Cause::MirrorFailing, repository_id: job.repository_id, subject, what, detail, failures }
        };
        self.notice_for(job, &context.watch, signal, about).await
    }

    /// A node gives a job back unfinished: two round trips.
    pub(super) async fn release_job(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let asked: ReleaseRequest = call.json()?;
        let (job, context) = self.leased(call, &asked.lease_id).await?;
        if job.state != JobState::Leased {
            return Ok(ApiResponse::empty(204));
        }
        let mut tracked = Self::tracked(&context, self.now);
        if let Some(t) = tracked.as_mut() {
            t.update().release();
            t.touch(self.now);
        }
        let saved = tracked.as_ref().map(Tracked::saved);
        let after = self
            .store
            .finish_job(job.id, &asked.lease_id, JobCompletion::Released, None, self.now, saved, None, None)
            .await?
            .0;
        after.ok_or_else(lease_lost)?;
        self.mark_queued();
        Ok(ApiResponse::empty(204))
    }
}

/// A lease of `job` as a node gets it, with none of the parts its kind adds.
pub(super) fn lease_of(job: &Job, lease_id: &str, deadline: i64) -> LeasedJob {
    LeasedJob {
        id: job.id,
        lease_id: lease_id.to_owned(),
        lease_deadline: deadline,
        attempt: job.attempt,
        reason: job.reason,
        kind: job.kind,
        repository: None,
        remote_mirror: None,
        fork: None,
        discovery: None,
        recreate: false,
        mail: None,
        hooks: Vec::new(),
        mesh_move: None,
        support_zip: None,
        migration: None,
        ref_poll: None,
    }
}

/// Whether `text` is a SHA-256 as lower-case hex (what a node reports as a hash).
fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The mirror whose state a job moves.
enum Tracked {
    /// A push mirror.
    Push(RemoteMirror),
    /// A repository's pull mirror.
    Pull(PullMirror),
}

impl Tracked {
    fn update(&mut self) -> &mut UpdateState {
        match self {
            Self::Push(m) => &mut m.update,
            Self::Pull(p) => &mut p.update,
        }
    }

    fn touch(&mut self, now: crate::time::Timestamp) {
        match self {
            Self::Push(m) => m.updated_at = now,
            Self::Pull(p) => p.updated_at = now,
        }
    }

    fn enabled(&self) -> bool {
        match self {
            Self::Push(m) => m.enabled,
            Self::Pull(p) => p.enabled,
        }
    }

    fn saved(&self) -> SavedMirror<'_> {
        match self {
            Self::Push(m) => SavedMirror::Push(m),
            Self::Pull(p) => SavedMirror::Pull(p),
        }
    }
}
