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
        assert_eq!(compile(&"a".repeat(256)).err(), Some(FilterError::TooLong));
        assert!(compile(&"a".repeat(255)).is_ok());
        assert!(matches!(compile("(unclosed"), Err(FilterError::Invalid(_))));
        // Backreferences are not RE2 syntax.
        assert!(matches!(compile(r"(a)\1"), Err(FilterError::Invalid(_))));
    }
}
