//! The life of one mirror update: `started` → `finished` | `failed` | `to_retry`, as GitLab.
//!
//! Transport errors are retried up to [`MAX_TRIES`] tries with exponential backoff, then the
//! mirror is `failed`; a later sync starts again. Skipped diverged refs fail the update at once
//! (retrying cannot help). A lease that expires under a crashed node counts as a failed try, so a
//! mirror never stays `started` past one lease deadline.

use super::{RemoteMirror, UpdateStatus};
use crate::time::Timestamp;
use crate::urls::scrub_text;

/// Tries of one update before the mirror is `failed`.
pub const MAX_TRIES: u32 = 3;

/// How an update try ended, as a farm node reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Every planned ref was pushed.
    Pushed,
    /// The push went through but some diverged refs were kept (the message lists them).
    Diverged(String),
    /// The try failed (network, authentication, remote rejection); the message is git's.
    Error(String),
}

/// What should happen to the job after a try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// The job is complete.
    Done,
    /// Queue it again, not before the given time.
    RetryAt(Timestamp),
    /// Give up.
    GiveUp,
}

/// The wait before try `attempt + 1` after `attempt` failed tries: `base`, then doubling, capped
/// at one hour.
pub fn backoff_ms(attempt: u32, base_ms: i64) -> i64 {
    let shift = attempt.saturating_sub(1).min(20);
    base_ms.saturating_mul(1 << shift).min(3_600_000)
}

impl RemoteMirror {
    /// A node has begun an update.
    pub fn begin_update(&mut self, now: Timestamp) {
        self.update_status = UpdateStatus::Started;
        self.last_update_started_at = Some(now);
        self.updated_at = now;
    }

    /// A node gave the update back unfinished (it is shutting down): it will run again.
    pub fn release_update(&mut self, now: Timestamp) {
        self.update_status = UpdateStatus::ToRetry;
        self.updated_at = now;
    }

    /// Records the end of try number `attempt` (1-based) and says what the job does next.
    /// Error text is scrubbed of credentials before it is kept.
    pub fn end_update(
        &mut self,
        outcome: &UpdateOutcome,
        attempt: u32,
        retry_base_ms: i64,
        now: Timestamp,
    ) -> NextStep {
        self.updated_at = now;
        match outcome {
            UpdateOutcome::Pushed => {
                self.update_status = UpdateStatus::Finished;
                self.last_update_at = Some(now);
                self.last_successful_update_at = Some(now);
                self.last_error = None;
                NextStep::Done
            }
            UpdateOutcome::Diverged(message) => {
                self.update_status = UpdateStatus::Failed;
                self.last_update_at = Some(now);
                self.last_error = Some(scrub_text(message));
                NextStep::Done
            }
            UpdateOutcome::Error(message) => {
                self.last_error = Some(scrub_text(message));
                if attempt < MAX_TRIES {
                    self.update_status = UpdateStatus::ToRetry;
                    NextStep::RetryAt(now.plus_millis(backoff_ms(attempt, retry_base_ms)))
                } else {
                    self.update_status = UpdateStatus::Failed;
                    self.last_update_at = Some(now);
                    NextStep::GiveUp
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::mirrors::AuthMethod;
    use crate::urls::StoredUrl;

    fn mirror() -> RemoteMirror {
        RemoteMirror {
            id: 1,
            repository_id: 1,
            url: StoredUrl { plain: "https://e.com/r".into(), masked: "https://e.com/r".into(), sealed_userinfo: None },
            enabled: true,
            only_protected_branches: false,
            keep_divergent_refs: false,
            mirror_branch_regex: None,
            auth_method: AuthMethod::Password,
            update_status: UpdateStatus::None,
            last_update_at: None,
            last_update_started_at: None,
            last_successful_update_at: None,
            last_error: Some("old".into()),
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    #[test]
    fn success_stamps_and_clears_error() {
        let mut m = mirror();
        m.begin_update(Timestamp(10));
        assert_eq!((m.update_status, m.last_update_started_at), (UpdateStatus::Started, Some(Timestamp(10))));
        assert_eq!(m.end_update(&UpdateOutcome::Pushed, 1, 1000, Timestamp(20)), NextStep::Done);
        assert_eq!(m.update_status, UpdateStatus::Finished);
        assert_eq!(
            (m.last_update_at, m.last_successful_update_at, m.last_error),
            (Some(Timestamp(20)), Some(Timestamp(20)), None)
        );
    }

    #[test]
    fn transport_errors_retry_with_backoff_then_fail_scrubbed() {
        let mut m = mirror();
        let err = UpdateOutcome::Error("fatal: unable to access 'https://u:hunter2@e.com/r/'".into());
        assert_eq!(m.end_update(&err, 1, 1000, Timestamp(0)), NextStep::RetryAt(Timestamp(1000)));
        assert_eq!(m.update_status, UpdateStatus::ToRetry);
        assert_eq!(m.end_update(&err, 2, 1000, Timestamp(0)), NextStep::RetryAt(Timestamp(2000)));
        assert_eq!(m.end_update(&err, 3, 1000, Timestamp(5)), NextStep::GiveUp);
        assert_eq!((m.update_status, m.last_update_at), (UpdateStatus::Failed, Some(Timestamp(5))));
        let text = m.last_error.expect("error kept");
        assert!(text.contains("*****:*****@e.com") && !text.contains("hunter2"));
        assert_eq!(m.last_successful_update_at, None);
    }

    #[test]
    fn diverged_fails_at_once() {
        let mut m = mirror();
        let outcome = UpdateOutcome::Diverged("Some refs have diverged…".into());
        assert_eq!(m.end_update(&outcome, 1, 1000, Timestamp(7)), NextStep::Done);
        assert_eq!(m.update_status, UpdateStatus::Failed);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!([1, 2, 3, 4].map(|a| backoff_ms(a, 30_000)), [30_000, 60_000, 120_000, 240_000]);
        assert_eq!(backoff_ms(40, 30_000), 3_600_000);
    }
}
