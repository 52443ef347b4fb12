//! What starts syncs besides the API: push webhooks from upstream hosts, and periodic polls that
//! skip all work while the upstream's ref fingerprint is unchanged.

use serde_json::json;

use super::{ApiError, ApiResponse, Call, Result, Service};
use crate::identity::{Level, constant_time_eq};
use crate::mirrors::PullMirror;
use crate::queue::{JobKind, JobReason, NewJob};
use crate::store::{Crypto, RepositoryTriggers, Store};
use crate::webhooks::{Event, Proof, read_delivery};

/// Largest webhook delivery accepted (push payloads list commits), in bytes.
pub const MAX_WEBHOOK_BYTES: usize = 1024 * 1024;

fn no_repository() -> ApiError {
    ApiError::not_found("Repository", "Repository does not exist.")
}

impl<S: Store, C: Crypto> Service<'_, S, C> {
    async fn triggers_of(&self, repository_id: i64) -> Result<RepositoryTriggers> {
        Ok(self
            .store
            .triggers(repository_id)
            .await?
            .unwrap_or(RepositoryTriggers { repository_id, ..RepositoryTriggers::default() }))
    }

    fn repository_id(call: &Call<'_>) -> Result<i64> {
        call.params.raw("repositoryId").parse().map_err(|_| no_repository())
    }

    /// `PUT …/repos/{id}/webhook`: makes a new webhook secret (shown once) for upstream hosts to sign with.
    pub(super) async fn configure_webhook(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.repository_at(call, Level::Admin).await?;
        let secret = self.random_hex(20)?;
        let mut triggers = self.triggers_of(repo.id).await?;
        triggers.webhook_secret_sealed = Some(self.crypto.seal(&secret).await?);
        self.store.save_triggers(&triggers).await?;
        Ok(ApiResponse::json(
            200,
            &json!({ "url": call.url(), "secret": secret, "contentType": "application/json", "events": ["push"] }),
        ))
    }

    /// `DELETE …/repos/{id}/webhook`: forgets the secret; deliveries are refused from then on.
    pub(super) async fn remove_webhook(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.repository_at(call, Level::Admin).await?;
        let mut triggers = self.triggers_of(repo.id).await?;
        triggers.webhook_secret_sealed = None;
        self.store.save_triggers(&triggers).await?;
        Ok(ApiResponse::empty(204))
    }

    /// `POST …/repos/{id}/webhook`: a delivery from GitHub, GitLab, Gitea or Bitbucket. It is
    /// authenticated by its signature or token, not by a user; a push queues the repository's syncs.
    pub(super) async fn receive_webhook(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.store.repository_by_id(Self::repository_id(call)?).await?.ok_or_else(no_repository)?;
        let triggers = self.triggers_of(repo.id).await?;
        let sealed = triggers
            .webhook_secret_sealed
            .ok_or_else(|| ApiError::not_found("Webhook", "No webhook is configured for this repository."))?;
        let delivery = read_delivery(|name| call.req.header(name)).map_err(|_| ApiError::Unauthorized)?;
        let secret = self.crypto.unseal(&sealed).await?;
        let valid = match &delivery.proof {
            Proof::Token(token) => constant_time_eq(token.as_bytes(), secret.as_bytes()),
            Proof::HmacSha256(given) => {
                let expected = self.crypto.hmac_sha256_hex(secret.as_bytes(), &call.req.body).await?;
                constant_time_eq(given.as_bytes(), expected.as_bytes())
            }
        };
        if !valid {
            return Err(ApiError::Unauthorized);
        }
        let queued = match delivery.event {
            Event::Ping => return Ok(ApiResponse::json(200, &json!({ "host": delivery.host, "message": "pong" }))),
            Event::Other => 0,
            Event::Push => self.queue_repository_syncs(repo.id, repo.upstream.is_some(), JobReason::Webhook).await?,
        };
        Ok(ApiResponse::json(202, &json!({ "host": delivery.host, "queued": queued })))
    }

    /// `POST …/repos/{id}/sync` (a node, or a user with REPO_ADMIN; the id may also be
    /// `KEY%2Fslug`): queues the repository's pull and every enabled push mirror, as a webhook
    /// would, for `sync <repo>` on a node.
    pub(super) async fn sync_repository(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.gitlab_repository(call.params.raw("repositoryId")).await?.ok_or_else(no_repository)?;
        if call.node.is_none() {
            let level = self.repository_level(call.who.as_ref(), &repo).await?;
            Self::require(call.who.as_ref(), level, Level::Admin, no_repository)?;
        }
        let queued = self.queue_repository_syncs(repo.id, repo.upstream.is_some(), JobReason::Manual).await?;
        Ok(ApiResponse::json(202, &json!({ "repositoryId": repo.id, "queued": queued })))
    }

    /// Queues a pull of the repository (if it has an enabled pull mirror) and a push to each
    /// enabled push mirror. Returns how many jobs now wait.
    async fn queue_repository_syncs(&self, repository_id: i64, has_upstream: bool, reason: JobReason) -> Result<usize> {
        let mut queued = 0;
        if pull_enabled(self.store.pull_mirror(repository_id).await?.as_ref(), has_upstream) {
            let job = NewJob {
                kind: JobKind::PullMirror,
                repository_id,
                remote_mirror_id: None,
                reason,
                enqueued_at: self.now,
            };
            self.store.enqueue(&job).await?;
            queued += 1;
        }
        for id in self.store.enabled_remote_mirror_ids(repository_id).await? {
            let job = NewJob {
                kind: JobKind::PushMirror,
                repository_id,
                remote_mirror_id: Some(id),
                reason,
                enqueued_at: self.now,
            };
            self.store.enqueue(&job).await?;
            queued += 1;
        }
        Ok(queued)
    }

    /// A pull reported the upstream's fingerprint: remember it, and if it changed, the push
    /// mirrors follow.
    pub(super) async fn upstream_pulled(&self, repository_id: i64, fingerprint: String) -> Result<()> {
        let mut triggers = self.triggers_of(repository_id).await?;
        if triggers.upstream_fingerprint.as_deref() == Some(fingerprint.as_str()) {
            return Ok(());
        }
        triggers.upstream_fingerprint = Some(fingerprint);
        self.store.save_triggers(&triggers).await?;
        for id in self.store.enabled_remote_mirror_ids(repository_id).await? {
            let job = NewJob {
                kind: JobKind::PushMirror,
                repository_id,
                remote_mirror_id: Some(id),
                reason: JobReason::Upstream,
                enqueued_at: self.now,
            };
            self.store.enqueue(&job).await?;
        }
        Ok(())
    }

    /// The cron: queues a poll of every repository whose upstream was not polled for
    /// `poll_interval_ms`. A poll whose upstream fingerprint is unchanged does nothing more.
    pub async fn schedule_polls(&self) -> Result<usize> {
        let due = self.store.repositories_due_for_poll(self.now.plus_millis(-self.config.poll_interval_ms)).await?;
        for &repository_id in &due {
            let job = NewJob {
                kind: JobKind::PullMirror,
                repository_id,
                remote_mirror_id: None,
                reason: JobReason::Poll,
                enqueued_at: self.now,
            };
            self.store.enqueue(&job).await?;
            let mut triggers = self.triggers_of(repository_id).await?;
            triggers.last_polled_at = Some(self.now);
            self.store.save_triggers(&triggers).await?;
        }
        Ok(due.len())
    }
}

/// Whether a repository's pull mirror (configured, or implicit when it has an upstream) is on.
pub(super) fn pull_enabled(configured: Option<&PullMirror>, has_upstream: bool) -> bool {
    configured.map_or(has_upstream, |p| p.enabled)
}
