//! A one-line verdict over a repository's mirrors, shared by the status API, the widget and the CLI.

use serde::{Deserialize, Serialize};

use super::UpdateStatus;
use crate::text::push_decimal;

/// Counts of mirror states and the verdict they add up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct StatusSummary {
    /// Mirrors counted.
    pub total: usize,
    /// Mirrors whose last update failed (including those waiting to retry).
    pub failing: usize,
    /// Mirrors being updated right now.
    pub syncing: usize,
    /// Mirrors never run yet.
    pub never_run: usize,
    /// Nobody is working on them: no farm node is alive, or a job has waited too long.
    pub stale: bool,
}

/// The overall state a summary comes to, worst first. Each has its own word and symbol in the
/// widget, so colour is never the only signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Some mirror's last update failed.
    Failing,
    /// Work is not being done (see [`StatusSummary::stale`]).
    Stale,
    /// Updates are running.
    Syncing,
    /// Some mirror has never run.
    Pending,
    /// Every mirror's last update succeeded.
    InSync,
    /// There are no (enabled) mirrors.
    Empty,
}

impl Verdict {
    /// A short machine name (`data-state` in the widget, CSS hooks).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failing => "failing",
            Self::Stale => "stale",
            Self::Syncing => "syncing",
            Self::Pending => "pending",
            Self::InSync => "ok",
            Self::Empty => "empty",
        }
    }
}

impl StatusSummary {
    /// Counts the given statuses.
    pub fn of(statuses: impl IntoIterator<Item = UpdateStatus>) -> Self {
        statuses.into_iter().fold(Self::default(), |mut s, status| {
            s.total += 1;
            match status {
                UpdateStatus::Failed | UpdateStatus::ToRetry => s.failing += 1,
                UpdateStatus::Started => s.syncing += 1,
                UpdateStatus::None => s.never_run += 1,
                UpdateStatus::Finished => {}
            }
            s
        })
    }

    /// The same counts, marked stale or not.
    pub fn with_stale(self, stale: bool) -> Self {
        Self { stale, ..self }
    }

    /// The overall state: failures first, then staleness, then work in progress, then all well.
    pub fn verdict(&self) -> Verdict {
        match *self {
            Self { total: 0, .. } => Verdict::Empty,
            Self { failing: 1.., .. } => Verdict::Failing,
            Self { stale: true, .. } => Verdict::Stale,
            Self { syncing: 1.., .. } => Verdict::Syncing,
            Self { never_run: 1.., .. } => Verdict::Pending,
            _ => Verdict::InSync,
        }
    }

    /// The verdict in words.
    pub fn headline(&self) -> String {
        let Self { total, failing, syncing, never_run, .. } = *self;
        // "[lead]N mirror(s)[tail]", pushed piece by piece: `format!` costs the widget bytes.
        let (lead, n, tail) = match self.verdict() {
            Verdict::Empty => return "No mirrors".to_owned(),
            Verdict::Stale => return "Stale: no farm node is working on these mirrors".to_owned(),
            Verdict::Failing => {
                let mut lead = String::new();
                push_decimal(&mut lead, failing as u64, 1);
                lead.push_str(" of ");
                (lead, total, " failing")
            }
            Verdict::Syncing => (String::new(), syncing, " syncing"),
            Verdict::Pending => (String::new(), never_run, " not synced yet"),
            Verdict::InSync => ("All ".to_owned(), total, " in sync"),
        };
        let mut text = lead;
        push_decimal(&mut text, n as u64, 1);
        text.push_str(if n == 1 { " mirror" } else { " mirrors" });
        text.push_str(tail);
        text
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use UpdateStatus::*;

    #[test]
    fn verdicts() {
        assert_eq!(StatusSummary::of([]).headline(), "No mirrors");
        assert_eq!(StatusSummary::of([Finished, Finished]).headline(), "All 2 mirrors in sync");
        assert_eq!(StatusSummary::of([Finished, Failed, ToRetry]).headline(), "2 of 3 mirrors failing");
        assert_eq!(StatusSummary::of([Finished, Started]).headline(), "1 mirror syncing");
        assert_eq!(StatusSummary::of([None]).headline(), "1 mirror not synced yet");
    }

    #[test]
    fn failures_outrank_staleness_which_outranks_progress() {
        assert_eq!(StatusSummary::of([Failed]).with_stale(true).verdict(), Verdict::Failing);
        assert_eq!(StatusSummary::of([Started]).with_stale(true).verdict(), Verdict::Stale);
        assert_eq!(StatusSummary::of([]).with_stale(true).verdict(), Verdict::Empty);
        assert_eq!(StatusSummary::of([Finished]).verdict().as_str(), "ok");
    }
}
