//! A one-line verdict over a repository's mirrors, shared by the widget and the CLI.

use super::UpdateStatus;

/// Counts of mirror states and the verdict they add up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusSummary {
    /// Mirrors counted.
    pub total: usize,
    /// Mirrors whose last update failed (including those waiting to retry).
    pub failing: usize,
    /// Mirrors being pushed right now.
    pub syncing: usize,
    /// Mirrors never run yet.
    pub never_run: usize,
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

    /// The verdict in words: failures first, then work in progress, then all well.
    pub fn headline(&self) -> String {
        let noun = |n: usize| if n == 1 { "mirror" } else { "mirrors" };
        match *self {
            Self { total: 0, .. } => "No mirrors".to_owned(),
            Self { failing: f, total, .. } if f > 0 => format!("{f} of {total} {} failing", noun(total)),
            Self { syncing: s, .. } if s > 0 => format!("{s} {} syncing", noun(s)),
            Self { never_run: n, .. } if n > 0 => format!("{n} {} not synced yet", noun(n)),
            Self { total, .. } => format!("All {total} {} in sync", noun(total)),
        }
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
}
