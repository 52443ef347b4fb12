//! The mail server (seed 002), notification settings, test mails, and the mail jobs nodes lease.

use serde_json::Value;

use super::identity::field;
use super::{ApiError, ApiResponse, Call, Result, Service};
use crate::admin::{RateLimiter, setting};
use crate::mail::notify::{self, Cause, MailJob, Notice, Signal, Watch};
use crate::mail::{
    DEFAULT_SENDER, LeasedMail, LeasedMailServer, MailError, MailServerDto, MailServerUpdate, MailTestResult,
    PasswordChange,
};
use crate::nodes::LeasedJob;
use crate::queue::{Job, JobKind, JobReason, Signals, WAITED_FOR_PRIORITY};
use crate::store::port::Database;
use crate::store::{Blobs, Crypto, NoticeWrite};

/// Most tries of a notification mail: with the backoff capped at an hour, about a day of a mail
/// server being down loses nothing.
pub const MAIL_MAX_TRIES: u32 = 24;

fn mail_field(e: &MailError) -> ApiError {
    field(e.field(), e)
}

fn no_mail_server() -> ApiError {
    ApiError::not_found("MailServer", "No mail server is configured.")
}

impl<D: Database, C: Crypto, S: Signals, L: RateLimiter, B: Blobs> Service<'_, D, C, S, L, B> {
    /// `GET …/admin/mail-server`: 404 until one is configured; never the password.
    pub(super) async fn get_mail_server(&self, _call: &Call<'_>) -> Result<ApiResponse> {
        let settings = self.settings().await?;
        let server = settings.mail_server.as_ref().ok_or_else(no_mail_server)?;
        Ok(ApiResponse::json(200, &MailServerDto::of(server, settings.mail_sender.as_deref())))
    }

    /// `PUT …/admin/mail-server`: the whole configuration (a password not sent is kept; `null`
    /// clears it), sealed before it is stored; the sender too when the body has one.
    pub(super) async fn put_mail_server(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let map = call.json_object()?;
        let settings = self.settings().await?;
        let mut update =
            MailServerUpdate::from_json(&map, settings.mail_server.as_ref()).map_err(|e| mail_field(&e))?;
        match std::mem::replace(&mut update.password, PasswordChange::Keep) {
            PasswordChange::Keep => {}
            PasswordChange::Clear => update.server.password_sealed = None,
            PasswordChange::Set(password) => update.server.password_sealed = Some(self.crypto.seal(&password).await?),
        }
        let sender = update.sender.clone().or_else(|| settings.mail_sender.clone());
        let server_json = serde_json::to_string(&update.server).map_err(|e| ApiError::Internal(e.to_string()))?;
        let mut writes = vec![(setting::MAIL_SERVER, Some(server_json))];
        if let Some(s) = &update.sender {
            writes.push((
                setting::MAIL_SENDER,
                Some(serde_json::to_string(s).map_err(|e| ApiError::Internal(e.to_string()))?),
            ));
        }
        self.store.put_settings(&writes).await?;
        self.forget_settings();
        Ok(ApiResponse::json(200, &MailServerDto::of(&update.server, sender.as_deref())))
    }

    /// `DELETE …/admin/mail-server`: 204 whether or not one was configured. Mails already queued
    /// wait (and are retried) until a server is configured again.
    pub(super) async fn delete_mail_server(&self, _call: &Call<'_>) -> Result<ApiResponse> {
        self.store.put_settings(&[(setting::MAIL_SERVER, None)]).await?;
        self.forget_settings();
        Ok(ApiResponse::empty(204))
    }

    /// `GET …/admin/mail-server/sender-address`: a bare JSON string; 404 when unset.
    pub(super) async fn get_sender_address(&self, _call: &Call<'_>) -> Result<ApiResponse> {
        let settings = self.settings().await?;
        let sender = settings
            .mail_sender
            .as_ref()
            .ok_or_else(|| ApiError::not_found("MailServer", "No sender address is configured."))?;
        Ok(ApiResponse::json(200, sender))
    }

    /// `PUT …/admin/mail-server/sender-address`: a bare JSON string (or the address as plain text).
    pub(super) async fn put_sender_address(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let text = match serde_json::from_slice::<Value>(&call.req.body) {
            Ok(Value::String(s)) => s,
            Ok(_) => return Err(field("senderAddress", "Send the address as a JSON string.")),
            Err(_) => String::from_utf8_lossy(&call.req.body).into_owned(),
        };
        let address = crate::mail::sender_address(&text).map_err(|e| mail_field(&e))?;
        let json = serde_json::to_string(&address).map_err(|e| ApiError::Internal(e.to_string()))?;
        self.store.put_settings(&[(setting::MAIL_SENDER, Some(json))]).await?;
        self.forget_settings();
        Ok(ApiResponse::json(200, &address))
    }

    /// `DELETE …/admin/mail-server/sender-address`: 204.
    pub(super) async fn delete_sender_address(&self, _call: &Call<'_>) -> Result<ApiResponse> {
        self.store.put_settings(&[(setting::MAIL_SENDER, None)]).await?;
        self.forget_settings();
        Ok(ApiResponse::empty(204))
    }

    /// `GET /rest/mirrorfarm/latest/admin/notifications`.
    pub(super) async fn get_notification_settings(&self, _call: &Call<'_>) -> Result<ApiResponse> {
        Ok(ApiResponse::json(200, &self.settings().await?.notifications))
    }

    /// `PUT /rest/mirrorfarm/latest/admin/notifications` `{failureThreshold, throttleMinutes}`:
    /// a field not sent keeps its value.
    pub(super) async fn put_notification_settings(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let map = call.json_object()?;
        let mut next = self.settings().await?.notifications;
        let number = |name: &'static str| -> Result<Option<u32>> {
            match map.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                    .and_then(|n| u32::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| field(name, format!("{name} must be a whole number."))),
            }
        };
        if let Some(n) = number("failureThreshold")? {
            next.failure_threshold = n;
        }
        if let Some(n) = number("throttleMinutes")? {
            next.throttle_minutes = n;
        }
        let next = next.validate().map_err(|(f, m)| field(f, m))?;
        let json = serde_json::to_string(&next).map_err(|e| ApiError::Internal(e.to_string()))?;
        self.store.put_settings(&[(setting::NOTIFICATIONS, Some(json))]).await?;
        self.forget_settings();
        Ok(ApiResponse::json(200, &next))
    }

    /// `GET /rest/mirrorfarm/latest/admin/mail`: the newest mail jobs and how each ended.
    pub(super) async fn list_mail(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let limit = call.query.get("limit").and_then(|l| l.parse::<u64>().ok()).unwrap_or(25).clamp(1, 100);
        let jobs: Vec<Job> = self.store.mail_jobs(limit).await?;
        Ok(ApiResponse::json(200, &jobs))
    }

    /// `POST /rest/mirrorfarm/latest/admin/mail-server/test` `{to?}`: a test mail to `to` (or the
    /// caller), delivered by a node while the request waits; the answer is the SMTP server's reply.
    pub(super) async fn test_mail(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let who = call.principal()?;
        let map = call.json_object()?;
        if self.settings().await?.mail_server.is_none() {
            return Err(ApiError::Conflict("No mail server is configured.".into()));
        }
        let to = match map.get("to") {
            Some(Value::String(s)) => crate::mail::sender_address(s).map_err(|e| field("to", e))?,
            None | Some(Value::Null) => who
                .user
                .email
                .clone()
                .ok_or_else(|| field("to", "You have no e-mail address: say where to send the test mail."))?,
            Some(_) => return Err(field("to", "to must be an e-mail address.")),
        };
        let payload = MailJob { notice: None, test_to: Some(to.clone()), nonce: self.random_hex(8)? };
        let text = serde_json::to_string(&payload).map_err(|e| ApiError::Internal(e.to_string()))?;
        self.audit_until_the_node_answers();
        let id = self.store.enqueue_mail(&text, JobReason::Requested, WAITED_FOR_PRIORITY, self.now).await?;
        let job = self.wait_for_job(id).await?;
        let sent = job.outcome.as_deref() == Some(crate::nodes::Outcome::Pushed.as_str());
        let response = job.message.unwrap_or_default();
        Ok(ApiResponse::json(200, &MailTestResult { sent, recipient: to, response, job_id: job.id }))
    }

    /// A leased mail as a node gets it: the server (password unsealed), sender, recipients and the
    /// rendered text. `Err(why)` when it cannot be sent at all (no server, nobody to tell).
    pub(super) async fn leased_mail(
        &self,
        call: &Call<'_>,
        job: &Job,
    ) -> Result<std::result::Result<LeasedMail, String>> {
        let asked: MailJob = match job.payload.as_deref().map(serde_json::from_str) {
            Some(Ok(p)) => p,
            _ => return Ok(Err("The mail job's payload is unreadable.".into())),
        };
        let settings = self.settings().await?;
        // Leases skip mail while no server is configured; this is a server removed just now.
        let Some(server) = settings.mail_server.clone() else {
            return Ok(Err("No mail server is configured.".into()));
        };
        let (to, rendered) = match (&asked.test_to, &asked.notice) {
            (Some(to), _) => (vec![to.clone()], test_mail_text(&call.req.origin)),
            (None, Some(notice)) => {
                let candidates = self.store.mail_candidates(notice.repository_id).await?;
                let to = notify::recipients(&candidates, notice.cause);
                let link = match notice.repository_id {
                    Some(id) => format!("{}/rest/mirrorfarm/1.0/repos/{id}/status", call.req.origin),
                    None => format!("{}/rest/api/1.0/admin/license", call.req.origin),
                };
                (to, notify::render(notice, &link))
            }
            (None, None) => return Ok(Err("The mail job has nothing to send.".into())),
        };
        if to.is_empty() {
            return Ok(Err("Nobody to tell: no administrator with an address who did not opt out.".into()));
        }
        let password = match &server.password_sealed {
            Some(sealed) => Some(self.crypto.unseal(sealed).await?),
            None => None,
        };
        Ok(Ok(LeasedMail {
            server: LeasedMailServer {
                hostname: server.hostname,
                port: server.port,
                protocol: server.protocol,
                use_start_tls: server.use_start_tls,
                require_start_tls: server.require_start_tls,
                username: server.username,
                password,
            },
            from: settings.mail_sender.clone().unwrap_or_else(|| DEFAULT_SENDER.to_owned()),
            to,
            subject: rendered.subject,
            text: rendered.text,
            html: rendered.html,
        }))
    }

    /// Whether a mail's failed try is tried again: test mails are tried once (a request waits for
    /// them), notifications up to [`MAIL_MAX_TRIES`].
    pub(super) fn mail_retries(job: &Job) -> bool {
        let test = job
            .payload
            .as_deref()
            .and_then(|p| serde_json::from_str::<MailJob>(p).ok())
            .is_some_and(|m| m.test_to.is_some());
        !test && job.attempt < MAIL_MAX_TRIES
    }

    /// What notifications make of a mirror's or fork's reported try: the watch to save and the
    /// mail to queue (`None`: nothing changed). Mails are decided only while a mail server is
    /// configured.
    pub(super) async fn notice_for(
        &self,
        job: &Job,
        watch: &Watch,
        signal: Option<Signal>,
        about: impl FnOnce() -> Notice,
    ) -> Result<Option<(String, Watch, Option<String>)>> {
        let Some(signal) = signal.filter(|s| !notify::changes_nothing(watch, *s)) else { return Ok(None) };
        let target = match job.kind {
            JobKind::PushMirror => crate::store::target::push(job.remote_mirror_id.unwrap_or_default()),
            JobKind::PullMirror => crate::store::target::pull(job.repository_id.unwrap_or_default()),
            JobKind::ForkSync => crate::store::target::fork(job.repository_id.unwrap_or_default()),
            JobKind::Discover | JobKind::UpstreamPoll | JobKind::SendMail => return Ok(None),
            JobKind::MigrationExport | JobKind::MigrationImport | JobKind::MeshMove | JobKind::SupportZip => {
                return Ok(None);
            }
        };
        let settings = self.settings().await?;
        let decision = notify::decide(watch, signal, &settings.notifications, self.now);
        if !decision.changed {
            return Ok(None);
        }
        let mail = match decision.mail.filter(|_| settings.mail_server.is_some()) {
            Some(cause) => Some(self.notice_payload(Notice { cause, ..about() })?),
            None => None,
        };
        Ok(Some((target, decision.watch, mail)))
    }

    /// The cron's license checks: expiry within 30 days and the user limit, each told once to
    /// the instance's administrators when it starts to hold. Two round trips when a license is
    /// installed, none otherwise.
    pub async fn check_license_notices(&self) -> Result<usize> {
        let settings = self.settings().await?;
        let Some(text) = settings.license.as_deref() else { return Ok(0) };
        let Ok(terms) = crate::admin::license::decode(text) else { return Ok(0) };
        let users = self.store.count_users().await?;
        let expiring = terms.expiry_date - self.now.millis() <= notify::LICENSE_WARNING_MS;
        let at_limit = terms.maximum_number_of_users >= 0 && users >= terms.maximum_number_of_users;
        let mut queued = 0;
        for (target, cause, holds, detail) in [
            (
                crate::store::target::LICENSE_EXPIRY,
                Cause::LicenseExpiring,
                expiring,
                format!("it ends on {}", crate::time::Timestamp(terms.expiry_date).to_iso8601()),
            ),
            (
                crate::store::target::LICENSE_USERS,
                Cause::LicenseUserLimit,
                at_limit,
                format!("{users} of {} users", terms.maximum_number_of_users),
            ),
        ] {
            let watch = self.store.watch(target).await?;
            let decision = notify::decide(&watch, Signal::Condition(cause, holds), &settings.notifications, self.now);
            if !decision.changed {
                continue;
            }
            let mail = match decision.mail.filter(|_| settings.mail_server.is_some()) {
                Some(cause) => {
                    queued += 1;
                    let subject = terms.licensee.clone();
                    let what = "license".to_owned();
                    Some(self.notice_payload(Notice {
                        cause,
                        repository_id: None,
                        subject,
                        what,
                        detail,
                        failures: 0,
                    })?)
                }
                None => None,
            };
            let write = NoticeWrite { target, watch: &decision.watch, mail: mail.as_deref() };
            self.store.save_watch(write, self.now).await?;
        }
        if queued > 0 {
            self.signals.notify(crate::queue::Topic::Queue).await;
        }
        Ok(queued)
    }

    /// A notification's `SEND_MAIL` payload (each distinct, by a nonce).
    fn notice_payload(&self, notice: Notice) -> Result<String> {
        let job = MailJob { notice: Some(notice), test_to: None, nonce: self.random_hex(8)? };
        serde_json::to_string(&job).map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// Turns a leased `SEND_MAIL` job into what the node gets (`Err(why)`: close it as failed).
    pub(super) async fn leased_mail_job(
        &self,
        call: &Call<'_>,
        job: &Job,
        lease: LeasedJob,
    ) -> Result<std::result::Result<LeasedJob, String>> {
        Ok(self.leased_mail(call, job).await?.map(|mail| LeasedJob { mail: Some(mail), ..lease }))
    }
}

/// The test mail's subject and bodies.
fn test_mail_text(origin: &str) -> notify::Rendered {
    let text =
        format!("This is a test mail from mirrorfarm at {origin}.\n\nIf you can read it, notifications reach you.\n");
    notify::Rendered {
        subject: "[mirrorfarm] Test mail".into(),
        html: format!(
            "<!DOCTYPE html><html><body><p>This is a test mail from mirrorfarm at {}.</p><p>If you can read it, notifications reach you.</p></body></html>",
            crate::mail::html_escape(origin)
        ),
        text,
    }
}

/// What a push or pull mirror's reported try is for notifications.
pub(super) fn mirror_signal(outcome: &crate::mirrors::UpdateOutcome) -> Option<Signal> {
    use crate::mirrors::UpdateOutcome as O;
    match outcome {
        O::Pushed | O::Unchanged => Some(Signal::Succeeded),
        O::Error(_) | O::Diverged(_) => Some(Signal::Failed),
    }
}
