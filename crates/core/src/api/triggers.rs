//! What starts syncs besides the API: push webhooks from upstream hosts, and periodic polls that
//! skip all work while the upstream's ref fingerprint is unchanged.

use crate::admin::RateLimiter;
use crate::queue::Signals;
use crate::store::Blobs;
use crate::webhooks::{WebhookAnswer, WebhookSecret};

use super::{ApiError, ApiResponse, Call, Result, Service};
use crate::identity::constant_time_eq;
use crate::mirrors::PullMirror;
use crate::nodes::SyncQueued;
use crate::queue::{JobReason, POLL_BATCH};
use crate::store::Crypto;
use crate::store::port::Database;
use crate::webhooks::{Event, Proof, read_delivery};

/// Largest webhook delivery accepted (push payloads list commits), in bytes.
pub const MAX_WEBHOOK_BYTES: usize = 1024 * 1024;

fn no_repository() -> ApiError {
    ApiError::not_found("Repository", "Repository does not exist.")
}

impl<D: Database, C: Crypto, S: Signals, L: RateLimiter, B: Blobs> Service<'_, D, C, S, L, B> {
    fn repository_id(call: &Call<'_>) -> Result<i64> {
        call.params.raw("repositoryId").parse().map_err(|_| no_repository())
    }

    /// `PUT …/repos/{id}/webhook`: makes a new webhook secret (shown once) for upstream hosts to sign with.
    pub(super) async fn configure_webhook(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.repository_at(call).await?;
        let secret = self.random_hex(20)?;
        self.store.set_webhook_secret(repo.id, Some(&self.crypto.seal(&secret).await?)).await?;
        Ok(ApiResponse::json(
            200,
            &WebhookSecret {
                url: call.url(),
                secret,
                content_type: "application/json".into(),
                events: vec!["push".into()],
            },
        ))
    }

    /// `DELETE …/repos/{id}/webhook`: forgets the secret; deliveries are refused from then on.
    pub(super) async fn remove_webhook(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.repository_at(call).await?;
        self.store.set_webhook_secret(repo.id, None).await?;
        Ok(ApiResponse::empty(204))
    }

    /// `POST …/repos/{id}/webhook`: a delivery from GitHub, GitLab, Gitea or Bitbucket. It is
    /// authenticated by its signature or token, not by a user; a push queues the repository's syncs.
    pub(super) async fn receive_webhook(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let (repo, triggers) = self.store.repository_and_triggers(Self::repository_id(call)?).await?;
        let repo = repo.ok_or_else(no_repository)?;
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
            Event::Ping => {
                return Ok(ApiResponse::json(200, &WebhookAnswer { host: delivery.host.into(), queued: None }));
            }
            Event::Other => 0,
            Event::Push => {
                self.mark_queued();
                self.store.queue_repository_syncs(repo.id, true, true, JobReason::Webhook, self.now).await?
            }
        };
        Ok(ApiResponse::json(202, &WebhookAnswer { host: delivery.host.into(), queued: Some(queued) }))
    }

    /// `POST …/repos/{id}/sync` (a node, or a user with REPO_ADMIN; the id may also be
    /// `KEY%2Fslug`): queues the repository's pull and every enabled push mirror, as a webhook
    /// would, for `sync <repo>` on a node.
    pub(super) async fn sync_repository(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let key = Self::gitlab_key(call.params.raw("repositoryId")).ok_or_else(no_repository)?;
        let repo = if call.node.is_some() {
            self.store.repository_access(key.as_key(), None).await?.0.ok_or_else(no_repository)?
        } else {
            self.repository_checked(call, key.as_key(), call.need(), no_repository).await?
        };
        Self::refuse_archived(&repo)?;
        let queued = self.store.queue_repository_syncs(repo.id, true, true, JobReason::Manual, self.now).await?;
        self.mark_queued();
        Ok(ApiResponse::json(202, &SyncQueued { repository_id: repo.id, queued }))
    }

    /// The cron: queues a poll of every repository whose upstream was not polled for
    /// `poll_interval_ms` (at most [`POLL_BATCH`] per run; the rest wait for the next run), and a
    /// discovery of every upstream server not listed for [`crate::farm::DISCOVERY_INTERVAL_MS`],
    /// and a hash poll of every upstream that publishes content hashes, whose farm repositories
    /// are not polled one by one. A poll whose upstream fingerprint is unchanged does nothing more.
    pub async fn schedule_polls(&self) -> Result<u64> {
        let before = self.now.plus_millis(-self.config.poll_interval_ms);
        let mut due = self.store.queue_due_polls(before, self.now, POLL_BATCH).await?;
        // Discovery runs again now and then, to see repositories created or deleted upstream.
        let listed_before = self.now.plus_millis(-crate::farm::DISCOVERY_INTERVAL_MS);
        due += self.store.queue_due_discoveries(listed_before, self.now).await?;
        // Farm upstreams: one poll each (by content hash, or by refs) instead of one per repository.
        due += self.store.queue_due_upstream_polls(before, self.now).await?;
        if due > 0 {
            self.signals.notify(crate::queue::Topic::Queue).await;
        }
        Ok(due)
    }
}

/// Whether a repository's pull mirror (configured, or implicit when it has an upstream) is on.
pub(super) fn pull_enabled(configured: Option<&PullMirror>, has_upstream: bool) -> bool {
    configured.map_or(has_upstream, |p| p.enabled)
}
