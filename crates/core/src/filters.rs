//! Which branches a mirror carries: all, protected only, or those matching a regex.
//!
//! GitLab evaluates `mirror_branch_regex` with RE2; `regex-lite` is likewise linear-time, so a
//! user's pattern cannot stall a node. Tags are never filtered.

/// Longest pattern accepted, as GitLab.
pub const MAX_BRANCH_REGEX_LEN: usize = 255;

/// Why a branch filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The pattern is longer than [`MAX_BRANCH_REGEX_LEN`].
    #[error("is too long (maximum is 255 characters)")]
    TooLong,
    /// The pattern does not compile.
    #[error("not valid RE2 syntax: {0}")]
    Invalid(String),
    /// Both a regex and protected-only were asked for.
    #[error("only_protected_branches and mirror_branch_regex cannot be used together")]
    Exclusive,
}

/// The branch selection of a mirror.
#[derive(Debug, Clone)]
pub enum BranchFilter {
    /// Every branch.
    All,
    /// Protected branches only.
    ProtectedOnly,
    /// Branches whose name matches (unanchored, as GitLab).
    Regex(regex_lite::Regex),
}

impl BranchFilter {
    /// Builds the filter from a mirror's settings, refusing the combinations GitLab refuses.
    pub fn new(only_protected: bool, regex: Option<&str>) -> Result<Self, FilterError> {
        match (only_protected, regex) {
            (true, Some(_)) => Err(FilterError::Exclusive),
            (true, None) => Ok(Self::ProtectedOnly),
            (false, None) => Ok(Self::All),
            (false, Some(pattern)) => Ok(Self::Regex(compile(pattern)?)),
        }
    }

    /// Whether the branch (short name, without `refs/heads/`) is mirrored.
    pub fn includes(&self, branch: &str, protected: bool) -> bool {
        match self {
            Self::All => true,
            Self::ProtectedOnly => protected,
            Self::Regex(re) => re.is_match(branch),
        }
    }
}

/// A mirror's branch selection after an update, by GitLab's update rule: sending a regex
/// alone turns protected-only off, sending protected-only (true) alone clears the regex, and
/// only a request that asks for both at once is refused. `sent_regex` is `Some(None)` when the
/// regex was sent empty (cleared). Returns (protected only, regex).
pub fn update_selection(
    current: (bool, Option<String>),
    sent_protected: Option<bool>,
    sent_regex: Option<Option<String>>,
) -> Result<(bool, Option<String>), FilterError> {
    let sent_regex = sent_regex.map(|r| r.filter(|p| !p.is_empty()));
    let (protected, regex) = match (sent_protected, sent_regex) {
        (Some(true), Some(Some(_))) => return Err(FilterError::Exclusive),
        (Some(p), Some(r)) => (p, r),
        (Some(true), None) => (true, None),
        (Some(false), None) => (false, current.1),
        (None, Some(Some(r))) => (false, Some(r)),
        (None, Some(None)) => (current.0, None),
        (None, None) => current,
    };
    if let Some(pattern) = &regex {
        compile(pattern)?;
    }
    Ok((protected, regex))
}

/// Checks a branch regex: length and syntax.
pub fn compile(pattern: &str) -> Result<regex_lite::Regex, FilterError> {
    if pattern.chars().count() > MAX_BRANCH_REGEX_LEN {
        return Err(FilterError::TooLong);
    }
    regex_lite::Regex::new(pattern).map_err(|e| FilterError::Invalid(first_line(&e.to_string())))
}

fn first_line(text: &str) -> String {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or(text).trim().to_owned()
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn filters_select_branches() {
        let all = BranchFilter::new(false, None).expect("valid");
        assert!(all.includes("feature/x", false));
        let protected = BranchFilter::new(true, None).expect("valid");
        assert!(protected.includes("main", true) && !protected.includes("dev", false));
        let re = BranchFilter::new(false, Some("^release/")).expect("valid");
        assert!(re.includes("release/1.0", false) && !re.includes("main", true));
    }

    #[test]
    fn refuses_bad_patterns() {
        assert_eq!(BranchFilter::new(true, Some("x")).err(), Some(FilterError::Exclusive));
    }

    #[test]
    fn updates_follow_gitlabs_rule_for_protected_only_and_regex() {
        let protected = (true, None);
        let regex = (false, Some("^rel".to_owned()));
        // A regex sent alone turns protected-only off.
        assert_eq!(update_selection(protected.clone(), None, Some(Some("^a".into()))), Ok((false, Some("^a".into()))));
        // Protected-only sent alone clears the regex.
        assert_eq!(update_selection(regex.clone(), Some(true), None), Ok((true, None)));
        // Only both at once is refused.
        assert_eq!(update_selection(regex.clone(), Some(true), Some(Some("x".into()))), Err(FilterError::Exclusive));
        // Everything else keeps or replaces what it names.
        assert_eq!(update_selection(regex.clone(), Some(false), None), Ok(regex.clone()));
        assert_eq!(update_selection(regex.clone(), None, Some(None)), Ok((false, None)));
        assert_eq!(update_selection(protected.clone(), Some(true), Some(None)), Ok((true, None)));
        assert_eq!(update_selection(regex.clone(), None, None), Ok(regex));
        assert!(matches!(update_selection(protected, None, Some(Some("(".into()))), Err(FilterError::Invalid(_))));
        assert_eq!(compile(&"a".repeat(256)).err(), Some(FilterError::TooLong));
        assert!(compile(&"a".repeat(255)).is_ok());
        assert!(matches!(compile("(unclosed"), Err(FilterError::Invalid(_))));
        // Backreferences are not RE2 syntax.
        assert!(matches!(compile(r"(a)\1"), Err(FilterError::Invalid(_))));
    }
}
