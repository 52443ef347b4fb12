//! The life of one mirror update: `started` → `finished` | `failed` | `to_retry`, as GitLab,
//! for push and pull mirrors alike.
//!
//! Transport errors are retried up to [`MAX_TRIES`] tries with exponential backoff, then the
//! mirror is `failed`; a later sync starts again. Skipped diverged refs fail the update at once
//! (retrying cannot help). A lease that expires under a crashed node counts as a failed try, so a
//! mirror never stays `started` past one lease deadline.

use super::{UpdateState, UpdateStatus};
use crate::time::Timestamp;
use crate::urls::scrub_text;

/// Tries of one update before the mirror is `failed`.
pub const MAX_TRIES: u32 = 3;

/// How an update try ended, as a farm node reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Every planned ref was updated.
    Pushed,
    /// The update went through but some diverged refs were kept (the message lists them).
    Diverged(String),
    /// The try failed (network, authentication, remote rejection); the message is git's.
    Error(String),
    /// A poll found the upstream as it was: nothing was done, and the state is left as it is.
    Unchanged,
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

impl UpdateState {
    /// A node has begun an update.
    pub fn begin(&mut self, now: Timestamp) {
        self.status = UpdateStatus::Started;
        self.last_update_started_at = Some(now);
    }

    /// A node gave the update back unfinished (it is shutting down): it will run again.
    pub fn release(&mut self) {
        self.status = UpdateStatus::ToRetry;
    }

    /// Records the end of try number `attempt` (1-based) and says what the job does next.
    /// Error text is scrubbed of credentials before it is kept.
    pub fn end(&mut self, outcome: &UpdateOutcome, attempt: u32, retry_base_ms: i64, now: Timestamp) -> NextStep {
        match outcome {
            // Polls do not mark the mirror started when leased, so there is nothing to undo.
            UpdateOutcome::Unchanged => NextStep::Done,
            UpdateOutcome::Pushed => {
                self.status = UpdateStatus::Finished;
                self.last_update_at = Some(now);
                self.last_successful_update_at = Some(now);
                self.last_error = None;
                NextStep::Done
            }
            UpdateOutcome::Diverged(message) => {
                self.status = UpdateStatus::Failed;
                self.last_update_at = Some(now);
                self.last_error = Some(scrub_text(message));
                NextStep::Done
            }
            UpdateOutcome::Error(message) => {
                self.last_error = Some(scrub_text(message));
                if attempt < MAX_TRIES {
                    self.status = UpdateStatus::ToRetry;
                    NextStep::RetryAt(now.plus_millis(backoff_ms(attempt, retry_base_ms)))
                } else {
                    self.status = UpdateStatus::Failed;
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

    fn state() -> UpdateState {
        UpdateState { last_error: Some("old".into()), ..UpdateState::default() }
    }

    #[test]
    fn success_stamps_and_clears_error() {
        let mut m = state();
        m.begin(Timestamp(10));
        assert_eq!((m.status, m.last_update_started_at), (UpdateStatus::Started, Some(Timestamp(10))));
        assert_eq!(m.end(&UpdateOutcome::Pushed, 1, 1000, Timestamp(20)), NextStep::Done);
        assert_eq!(m.status, UpdateStatus::Finished);
        assert_eq!(
            (m.last_update_at, m.last_successful_update_at, m.last_error),
            (Some(Timestamp(20)), Some(Timestamp(20)), None)
        );
    }

    #[test]
    fn transport_errors_retry_with_backoff_then_fail_scrubbed() {
        let mut m = state();
        let err = UpdateOutcome::Error("fatal: unable to access 'https://u:hunter2@e.com/r/'".into());
        assert_eq!(m.end(&err, 1, 1000, Timestamp(0)), NextStep::RetryAt(Timestamp(1000)));
        assert_eq!(m.status, UpdateStatus::ToRetry);
        assert_eq!(m.end(&err, 2, 1000, Timestamp(0)), NextStep::RetryAt(Timestamp(2000)));
        assert_eq!(m.end(&err, 3, 1000, Timestamp(5)), NextStep::GiveUp);
        assert_eq!((m.status, m.last_update_at), (UpdateStatus::Failed, Some(Timestamp(5))));
        let text = m.last_error.expect("error kept");
        assert!(text.contains("*****:*****@e.com") && !text.contains("hunter2"));
        assert_eq!(m.last_successful_update_at, None);
    }

    #[test]
    fn diverged_fails_at_once_and_release_means_retry() {
        let mut m = state();
        let outcome = UpdateOutcome::Diverged("Some refs have diverged…".into());
        assert_eq!(m.end(&outcome, 1, 1000, Timestamp(7)), NextStep::Done);
        assert_eq!(m.status, UpdateStatus::Failed);
        m.release();
        assert_eq!(m.status, UpdateStatus::ToRetry);
    }

    #[test]
    fn an_unchanged_poll_leaves_the_state_alone() {
        let mut m = state();
        m.status = UpdateStatus::Finished;
        let before = m.clone();
        assert_eq!(m.end(&UpdateOutcome::Unchanged, 1, 1000, Timestamp(9)), NextStep::Done);
        assert_eq!(m, before);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!([1, 2, 3, 4].map(|a| backoff_ms(a, 30_000)), [30_000, 60_000, 120_000, 240_000]);
        assert_eq!(backoff_ms(40, 30_000), 3_600_000);
    }
}
