//! Who is told what, and when: the notification rules, written once.
//!
//! Each watched thing (a push mirror, a repository's pull mirror or farm copy, a fork, the
//! license) has a [`Watch`]: its consecutive failed tries, whether its admins were told it is in
//! trouble, and when each cause was last mailed. Every outcome is a [`Signal`]; [`decide`] turns
//! the watch and the signal into the next watch and, at most, one mail. Mails go to the
//! [`recipients`] the instance's users did not opt out of, at most once per target and cause per
//! throttle period ([`NotificationSettings`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::html_escape;
use crate::time::Timestamp;

/// Why a mail is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Cause {
    /// A push mirror, pull mirror or farm repository failed `failureThreshold` tries in a row.
    MirrorFailing,
    /// …and then succeeded again.
    MirrorRecovered,
    /// A fork's MERGE stopped on a conflict.
    ForkConflict,
    /// A fork's sync found a ref that diverged from its origin.
    ForkDiverged,
    /// The license ends within [`LICENSE_WARNING_MS`].
    LicenseExpiring,
    /// The license's user limit is reached.
    LicenseUserLimit,
}

crate::wire_names!(Cause {
    MirrorFailing = "MIRROR_FAILING",
    MirrorRecovered = "MIRROR_RECOVERED",
    ForkConflict = "FORK_CONFLICT",
    ForkDiverged = "FORK_DIVERGED",
    LicenseExpiring = "LICENSE_EXPIRING",
    LicenseUserLimit = "LICENSE_USER_LIMIT",
});

/// The user settings (`GET/POST /rest/api/latest/users/{slug}/settings`) by which a user opts out:
/// `false` turns that family of mail off.
pub mod opt_out {
    /// Every notification e-mail.
    pub const ALL: &str = "mirrorfarm.notifications.email";
    /// Mirror failures and recoveries.
    pub const MIRRORS: &str = "mirrorfarm.notifications.mirrors";
    /// Fork conflicts and divergence.
    pub const FORKS: &str = "mirrorfarm.notifications.forks";
    /// License expiry and user limit.
    pub const LICENSE: &str = "mirrorfarm.notifications.license";
    /// Every key above, for reading them in one go.
    pub const KEYS: [&str; 4] = [ALL, MIRRORS, FORKS, LICENSE];
}

impl Cause {
    /// The user setting that turns this cause's mail off.
    pub fn opt_out_key(self) -> &'static str {
        match self {
            Self::MirrorFailing | Self::MirrorRecovered => opt_out::MIRRORS,
            Self::ForkConflict | Self::ForkDiverged => opt_out::FORKS,
            Self::LicenseExpiring | Self::LicenseUserLimit => opt_out::LICENSE,
        }
    }

    /// Whether the instance's administrators (rather than a repository's) are told.
    pub fn for_instance(self) -> bool {
        matches!(self, Self::LicenseExpiring | Self::LicenseUserLimit)
    }
}

/// How early the license's end is announced: 30 days.
pub const LICENSE_WARNING_MS: i64 = 30 * 86_400_000;

/// The instance's notification settings (`GET/PUT /rest/mirrorfarm/latest/admin/notifications`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct NotificationSettings {
    /// Consecutive failed tries after which a mirror counts as failing (1 to 100; default 3).
    pub failure_threshold: u32,
    /// At most one mail per target and cause within this many minutes (0 to 10080; default 60).
    pub throttle_minutes: u32,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self { failure_threshold: 3, throttle_minutes: 60 }
    }
}

impl NotificationSettings {
    /// Checks the bounds; the error names the field.
    pub fn validate(self) -> Result<Self, (&'static str, &'static str)> {
        if !(1..=100).contains(&self.failure_threshold) {
            return Err(("failureThreshold", "failureThreshold must be from 1 to 100."));
        }
        if self.throttle_minutes > 10_080 {
            return Err(("throttleMinutes", "throttleMinutes must be from 0 to 10080 (a week)."));
        }
        Ok(self)
    }

    fn throttle_ms(self) -> i64 {
        i64::from(self.throttle_minutes) * 60_000
    }
}

/// What is known of one watched target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watch {
    /// Failed tries in a row.
    pub failures: u32,
    /// Whether its admins were told it is in trouble (failing, diverged, expiring…).
    pub alerted: bool,
    /// When each cause was last mailed (cause name → epoch ms).
    pub sent: BTreeMap<String, i64>,
}

/// An outcome notifications hear of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A mirror's try failed.
    Failed,
    /// A mirror's try succeeded (or found nothing to do).
    Succeeded,
    /// Something happened that is worth a mail each time (throttled): a fork's conflict.
    Event(Cause),
    /// A condition holds, or no longer does (a fork's divergence, the license's expiry or limit):
    /// told once when it starts to hold.
    Condition(Cause, bool),
}

/// What [`decide`] concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The watch as it now is.
    pub watch: Watch,
    /// The mail to send, if any.
    pub mail: Option<Cause>,
    /// Whether the watch changed (else nothing need be written).
    pub changed: bool,
}

/// The rules: a mirror is reported failing once when its consecutive failures reach the
/// threshold, and recovered once when a try then succeeds; a condition is reported once when it
/// starts to hold; an event every time. A mail is dropped (the watch still moves) when the same
/// cause was mailed for the target within the throttle period.
pub fn decide(watch: &Watch, signal: Signal, settings: &NotificationSettings, now: Timestamp) -> Decision {
    let mut next = watch.clone();
    let wanted = match signal {
        Signal::Failed => {
            next.failures = watch.failures.saturating_add(1);
            let failing = next.failures >= settings.failure_threshold && !watch.alerted;
            next.alerted |= failing;
            failing.then_some(Cause::MirrorFailing)
        }
        Signal::Succeeded => {
            next.failures = 0;
            next.alerted = false;
            watch.alerted.then_some(Cause::MirrorRecovered)
        }
        Signal::Event(cause) => Some(cause),
        Signal::Condition(cause, holds) => {
            next.alerted = holds;
            (holds && !watch.alerted).then_some(cause)
        }
    };
    let mail = wanted
        .filter(|cause| watch.sent.get(cause.as_str()).is_none_or(|at| now.millis() - at >= settings.throttle_ms()));
    if let Some(cause) = mail {
        next.sent.insert(cause.as_str().to_owned(), now.millis());
    }
    let changed = next != *watch;
    Decision { watch: next, mail, changed }
}

/// Whether `signal` leaves `watch` as it is whatever the settings (a success of a target that
/// was not failing: the common case), so the settings need not even be read.
pub fn changes_nothing(watch: &Watch, signal: Signal) -> bool {
    match signal {
        Signal::Succeeded => watch.failures == 0 && !watch.alerted,
        Signal::Condition(_, holds) => !holds && !watch.alerted,
        Signal::Failed | Signal::Event(_) => false,
    }
}

/// A user who might be told: their address, how they relate to the target, and their settings
/// among [`opt_out::KEYS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidate {
    /// Their e-mail address (no address, no mail).
    pub email: Option<String>,
    /// An administrator of the repository (directly or through its project).
    pub repository_admin: bool,
    /// A global ADMIN or SYS_ADMIN.
    pub instance_admin: bool,
    /// Their notification settings (key → value).
    pub settings: serde_json::Map<String, Value>,
}

impl Candidate {
    fn opted_out(&self, cause: Cause) -> bool {
        let off = |key: &str| match self.settings.get(key) {
            Some(Value::Bool(b)) => !b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("false"),
            _ => false,
        };
        off(opt_out::ALL) || off(cause.opt_out_key())
    }
}

/// Who is mailed about `cause`: the repository's administrators (or, for the license or a
/// repository without any who has an address, the instance's), less those who opted out; each
/// address once, sorted. Repository administrators who all opted out are not replaced by the
/// instance's: they chose not to be told.
pub fn recipients(candidates: &[Candidate], cause: Cause) -> Vec<String> {
    let reachable = |c: &Candidate| c.email.as_deref().is_some_and(|e| super::sender_address(e).is_ok());
    let repository_admins = !cause.for_instance() && candidates.iter().any(|c| c.repository_admin && reachable(c));
    let mut to: Vec<String> = candidates
        .iter()
        .filter(|c| if repository_admins { c.repository_admin } else { c.instance_admin })
        .filter(|c| !c.opted_out(cause))
        .filter_map(|c| c.email.as_deref().and_then(|e| super::sender_address(e).ok()))
        .collect();
    to.sort_by_key(|a| a.to_ascii_lowercase());
    to.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    to
}

/// What a queued notification mail is about: everything its text needs but the recipients,
/// who are read when a node leases it (so a user who opts out meanwhile is not mailed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    /// Why.
    pub cause: Cause,
    /// The repository concerned (none for the license).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_id: Option<i64>,
    /// The repository as `KEY/slug`, or what else is concerned.
    pub subject: String,
    /// What of it: `push mirror to https://host/path` (credentials masked), `pull mirror`, …
    pub what: String,
    /// The last error, divergence or conflict (scrubbed), or the license's terms.
    #[serde(default)]
    pub detail: String,
    /// Failed tries in a row, for failures.
    #[serde(default)]
    pub failures: u32,
}

/// A `SEND_MAIL` job's payload: a notification or an administrator's test mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MailJob {
    /// A notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<Notice>,
    /// A test mail to this address (tried once: the request waits for the answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_to: Option<String>,
    /// Makes each queued mail distinct (the queue merges identical waiting jobs).
    pub nonce: String,
}

/// A mail's subject and bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Subject line.
    pub subject: String,
    /// Plain text.
    pub text: String,
    /// HTML with the same content.
    pub html: String,
}

/// Writes a notification: a subject, a text and an HTML body with a link to `link` (where the
/// repository's status is read).
pub fn render(notice: &Notice, link: &str) -> Rendered {
    let (headline, body) = match notice.cause {
        Cause::MirrorFailing => (
            format!("{} of {} is failing", notice.what, notice.subject),
            format!(
                "The {} of {} has failed {} times in a row. The last error was:\n\n{}\n\nIt is tried again on the next change or poll; you will be told when it recovers.",
                notice.what, notice.subject, notice.failures, notice.detail
            ),
        ),
        Cause::MirrorRecovered => (
            format!("{} of {} has recovered", notice.what, notice.subject),
            format!("The {} of {} succeeded again after failing.", notice.what, notice.subject),
        ),
        Cause::ForkConflict => (
            format!("Fork sync of {} stopped on a conflict", notice.subject),
            format!(
                "Synchronizing the fork {} with its origin stopped on a conflict:\n\n{}\n\nNothing was pushed for that ref.",
                notice.subject, notice.detail
            ),
        ),
        Cause::ForkDiverged => (
            format!("Fork {} has diverged from its origin", notice.subject),
            format!(
                "The fork {} has refs that diverged from its origin and are no longer synchronized automatically:\n\n{}\n\nMERGE or DISCARD them through the sync API.",
                notice.subject, notice.detail
            ),
        ),
        Cause::LicenseExpiring => (
            format!("The {} license expires soon", notice.subject),
            format!("The license of {} expires soon: {}.", notice.subject, notice.detail),
        ),
        Cause::LicenseUserLimit => (
            format!("The {} license's user limit is reached", notice.subject),
            format!("{} has reached its licensed number of users: {}.", notice.subject, notice.detail),
        ),
    };
    let subject = format!("[mirrorfarm] {headline}");
    let text = format!(
        "{body}\n\n{link}\n\n-- \nmirrorfarm: you get this as an administrator. Turn it off with the user setting {} = false.\n",
        notice.cause.opt_out_key()
    );
    let paragraphs: String =
        body.split("\n\n").map(|p| format!("<p>{}</p>", html_escape(p).replace('\n', "<br>"))).collect();
    let html = format!(
        "<!DOCTYPE html><html><body><h2>{}</h2>{paragraphs}<p><a href=\"{}\">{}</a></p>\
         <hr><p style=\"color:#666\">mirrorfarm: you get this as an administrator. Turn it off with the user setting <code>{}</code> = false.</p></body></html>",
        html_escape(&headline),
        html_escape(link),
        html_escape(link),
        notice.cause.opt_out_key()
    );
    Rendered { subject, text, html }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const HOUR: i64 = 3_600_000;

    fn run(signals: &[(Signal, i64)]) -> Vec<Option<Cause>> {
        let settings = NotificationSettings::default();
        let mut watch = Watch::default();
        signals
            .iter()
            .map(|(s, at)| {
                let d = decide(&watch, *s, &settings, Timestamp(*at));
                watch = d.watch;
                d.mail
            })
            .collect()
    }

    #[test]
    fn failing_is_told_once_at_the_threshold_and_recovery_once() {
        use Signal::{Failed as F, Succeeded as S};
        let mails = run(&[(F, 0), (F, 1), (F, 2), (F, 3), (F, 4), (S, 5), (S, 6)]);
        assert_eq!(mails, [None, None, Some(Cause::MirrorFailing), None, None, Some(Cause::MirrorRecovered), None]);
        // A success before the threshold resets the count: nothing is told.
        assert_eq!(run(&[(F, 0), (F, 1), (S, 2), (F, 3), (F, 4)]), [None; 5]);
    }

    #[test]
    fn the_throttle_drops_a_second_mail_of_a_cause_within_the_period() {
        use Signal::{Failed as F, Succeeded as S};
        let flapping = run(&[(F, 0), (F, 1), (F, 2), (S, 10), (F, 20), (F, 21), (F, 22), (S, 30)]);
        assert_eq!(
            flapping,
            [None, None, Some(Cause::MirrorFailing), Some(Cause::MirrorRecovered), None, None, None, None]
        );
        let later = run(&[(F, 0), (F, 1), (F, 2), (S, 10), (F, HOUR), (F, HOUR + 1), (F, HOUR + 2), (S, HOUR + 10)]);
        assert_eq!(later[6], Some(Cause::MirrorFailing));
        assert_eq!(later[7], Some(Cause::MirrorRecovered));
        // Events repeat, but not within the period.
        let conflicts = run(&[
            (Signal::Event(Cause::ForkConflict), 0),
            (Signal::Event(Cause::ForkConflict), 5),
            (Signal::Event(Cause::ForkConflict), HOUR),
        ]);
        assert_eq!(conflicts, [Some(Cause::ForkConflict), None, Some(Cause::ForkConflict)]);
    }

    #[test]
    fn conditions_are_told_when_they_start_to_hold() {
        let d = |on| Signal::Condition(Cause::ForkDiverged, on);
        assert_eq!(
            run(&[(d(false), 0), (d(true), HOUR), (d(true), 2 * HOUR), (d(false), 3 * HOUR), (d(true), 4 * HOUR)]),
            [None, Some(Cause::ForkDiverged), None, None, Some(Cause::ForkDiverged)]
        );
        let unchanged = decide(&Watch::default(), Signal::Succeeded, &NotificationSettings::default(), Timestamp(0));
        assert!(!unchanged.changed && unchanged.mail.is_none());
        assert!(changes_nothing(&Watch::default(), Signal::Succeeded));
        assert!(changes_nothing(&Watch::default(), d(false)));
        let failing = Watch { failures: 1, ..Watch::default() };
        assert!(!changes_nothing(&failing, Signal::Succeeded) && !changes_nothing(&Watch::default(), Signal::Failed));
    }

    #[test]
    fn recipients_are_repository_admins_else_instance_admins_less_opt_outs() {
        let who = |email: &str, repo: bool, instance: bool, settings: Value| Candidate {
            email: Some(email.into()),
            repository_admin: repo,
            instance_admin: instance,
            settings: settings.as_object().cloned().unwrap_or_default(),
        };
        let all = vec![
            who("b@example.com", true, false, Value::Null),
            who("a@example.com", true, false, serde_json::json!({opt_out::MIRRORS: true})),
            who("quiet@example.com", true, false, serde_json::json!({opt_out::MIRRORS: false})),
            who("muted@example.com", true, false, serde_json::json!({opt_out::ALL: "false"})),
            who("root@example.com", false, true, Value::Null),
            Candidate { email: None, repository_admin: true, ..Candidate::default() },
        ];
        assert_eq!(recipients(&all, Cause::MirrorFailing), ["a@example.com", "b@example.com"]);
        // The quiet one turned off mirror mail only.
        assert!(recipients(&all, Cause::ForkDiverged).contains(&"quiet@example.com".to_owned()));
        assert_eq!(recipients(&all, Cause::LicenseExpiring), ["root@example.com"]);
        assert_eq!(recipients(&all[4..], Cause::MirrorFailing), ["root@example.com"]);
    }

    #[test]
    fn rendering_escapes_and_links() {
        let notice = Notice {
            cause: Cause::MirrorFailing,
            repository_id: Some(7),
            subject: "PRJ/repo".into(),
            what: "push mirror to https://*****:*****@example.com/x.git".into(),
            detail: "fatal: <unreachable> & gone".into(),
            failures: 3,
        };
        let mail = render(&notice, "https://mf.example/rest/mirrorfarm/1.0/repos/7/status");
        assert!(mail.subject.starts_with("[mirrorfarm] push mirror") && mail.subject.contains("PRJ/repo"));
        assert!(mail.text.contains("3 times") && mail.text.contains("fatal: <unreachable> & gone"));
        assert!(mail.html.contains("fatal: &lt;unreachable&gt; &amp; gone"));
        assert!(mail.html.contains("href=\"https://mf.example/rest/mirrorfarm/1.0/repos/7/status\""));
        assert!(mail.text.contains(opt_out::MIRRORS));
    }
}
