//! GitLab's protected branches: names or wildcard patterns (`release/*`) per project. Mirrors
//! set to `only_protected_branches` carry exactly the branches they match; until a project
//! protects any, its default branch counts as protected, as in GitLab.

use serde::Serialize;

use crate::api::{FieldError, Fields, FromFields};

/// Longest name or pattern accepted.
pub const MAX_PATTERN_LEN: usize = 255;

/// GitLab's access levels a protected branch may name: no one, developers, maintainers, admins.
const ACCESS_LEVELS: [u64; 4] = [0, 30, 40, 60];

/// A protected branch rule as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedBranch {
    /// Numeric id.
    pub id: i64,
    /// Branch name or wildcard pattern.
    pub name: String,
    /// Who may push (GitLab access level).
    pub push_access_level: u64,
    /// Who may merge.
    pub merge_access_level: u64,
    /// Who may unprotect.
    pub unprotect_access_level: u64,
    /// Whether force pushes are allowed.
    pub allow_force_push: bool,
    /// Whether code owners must approve.
    pub code_owner_approval_required: bool,
}

/// What `POST …/protected_branches` sends: `name` and optional levels and flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ProtectedBranchParams {
    /// `name`: a branch name or a wildcard pattern (required).
    pub name: Option<String>,
    /// `push_access_level` (0, 30, 40 or 60; default 40).
    pub push_access_level: Option<u64>,
    /// `merge_access_level` (default 40).
    pub merge_access_level: Option<u64>,
    /// `unprotect_access_level` (default 40).
    pub unprotect_access_level: Option<u64>,
    /// `allow_force_push` (default false).
    pub allow_force_push: Option<bool>,
    /// `code_owner_approval_required` (default false).
    pub code_owner_approval_required: Option<bool>,
}

impl FromFields for ProtectedBranchParams {
    fn from_fields(fields: &Fields) -> Result<Self, FieldError> {
        Ok(Self {
            name: fields.string("name")?,
            push_access_level: fields.unsigned("push_access_level")?,
            merge_access_level: fields.unsigned("merge_access_level")?,
            unprotect_access_level: fields.unsigned("unprotect_access_level")?,
            allow_force_push: fields.boolean("allow_force_push")?,
            code_owner_approval_required: fields.boolean("code_owner_approval_required")?,
        })
    }
}

/// Why a protected branch request was refused; `field` names the parameter (GitLab's 400s).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtectedBranchError {
    /// No name was sent.
    #[error("name is missing")]
    MissingName,
    /// The name is not a usable branch name or pattern.
    #[error("name is invalid: {0}")]
    InvalidName(&'static str),
    /// An access level GitLab does not have.
    #[error("{0} does not have a valid value")]
    AccessLevel(&'static str),
}

impl ProtectedBranchParams {
    /// Checks the request and fills in GitLab's defaults (id 0: not stored yet).
    pub fn check(self) -> Result<ProtectedBranch, ProtectedBranchError> {
        let name = self.name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
        let name = name.ok_or(ProtectedBranchError::MissingName)?;
        validate_pattern(&name)?;
        let level = |value: Option<u64>, field: &'static str| match value {
            None => Ok(40),
            Some(v) if ACCESS_LEVELS.contains(&v) => Ok(v),
            Some(_) => Err(ProtectedBranchError::AccessLevel(field)),
        };
        Ok(ProtectedBranch {
            id: 0,
            push_access_level: level(self.push_access_level, "push_access_level")?,
            merge_access_level: level(self.merge_access_level, "merge_access_level")?,
            unprotect_access_level: level(self.unprotect_access_level, "unprotect_access_level")?,
            allow_force_push: self.allow_force_push.unwrap_or(false),
            code_owner_approval_required: self.code_owner_approval_required.unwrap_or(false),
            name,
        })
    }
}

/// A branch name or pattern: git's ref-name rules, with `*` allowed as the wildcard.
fn validate_pattern(name: &str) -> Result<(), ProtectedBranchError> {
    let bad = |why| Err(ProtectedBranchError::InvalidName(why));
    if name.chars().count() > MAX_PATTERN_LEN {
        return bad("is too long (maximum is 255 characters)");
    }
    if name.chars().any(|c| c.is_control() || c == ' ' || "~^:?[\\".contains(c)) {
        return bad("may not contain spaces, control characters or any of ~^:?[\\");
    }
    if name.starts_with('/') || name.ends_with('/') || name.contains("//") || name.contains("..") {
        return bad("may not start or end with '/', or contain '//' or '..'");
    }
    if name.ends_with(".lock") || name.ends_with('.') || name.contains("@{") {
        return bad("may not end with '.lock' or '.', or contain '@{'");
    }
    Ok(())
}

/// Whether `branch` matches `pattern`, GitLab's way: `*` stands for any run of characters
/// (slashes included); everything else matches itself.
pub fn pattern_matches(pattern: &str, branch: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = branch.strip_prefix(first) else { return false };
    let pieces: Vec<&str> = parts.collect();
    let Some((last, middle)) = pieces.split_last() else { return rest.is_empty() };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The patterns a mirror's `only_protected_branches` follows: the project's, or its default
/// branch while it has none.
pub fn effective_patterns(rules: &[String], default_branch: &str) -> Vec<String> {
    if rules.is_empty() { vec![default_branch.to_owned()] } else { rules.to_vec() }
}

/// `{access_level, access_level_description}` as GitLab lists a rule's levels.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct AccessLevelDto {
    /// Id of the level entry (the rule's own id: one entry per kind here).
    pub id: i64,
    /// GitLab access level.
    pub access_level: u64,
    /// Its name.
    pub access_level_description: &'static str,
    /// Always null: levels are by role here, not by user, group or deploy key.
    pub user_id: Option<i64>,
    /// Always null.
    pub group_id: Option<i64>,
    /// Always null.
    pub deploy_key_id: Option<i64>,
}

/// GitLab's `ProtectedBranch` entity.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ProtectedBranchDto {
    /// Id.
    pub id: i64,
    /// Name or pattern.
    pub name: String,
    /// Who may push.
    pub push_access_levels: Vec<AccessLevelDto>,
    /// Who may merge.
    pub merge_access_levels: Vec<AccessLevelDto>,
    /// Who may unprotect.
    pub unprotect_access_levels: Vec<AccessLevelDto>,
    /// Force pushes allowed.
    pub allow_force_push: bool,
    /// Code owners must approve.
    pub code_owner_approval_required: bool,
}

fn describe(level: u64) -> &'static str {
    match level {
        0 => "No one",
        30 => "Developers + Maintainers",
        60 => "Admins",
        _ => "Maintainers",
    }
}

impl From<&ProtectedBranch> for ProtectedBranchDto {
    fn from(b: &ProtectedBranch) -> Self {
        let entry = |level: u64| {
            vec![AccessLevelDto {
                id: b.id,
                access_level: level,
                access_level_description: describe(level),
                user_id: None,
                group_id: None,
                deploy_key_id: None,
            }]
        };
        Self {
            id: b.id,
            name: b.name.clone(),
            push_access_levels: entry(b.push_access_level),
            merge_access_levels: entry(b.merge_access_level),
            unprotect_access_levels: entry(b.unprotect_access_level),
            allow_force_push: b.allow_force_push,
            code_owner_approval_required: b.code_owner_approval_required,
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn wildcards_match_any_run_including_slashes() {
        assert!(pattern_matches("main", "main"));
        assert!(!pattern_matches("main", "mainline"));
        assert!(pattern_matches("release/*", "release/1.0"));
        assert!(pattern_matches("release/*", "release/1.x/hotfix"));
        assert!(!pattern_matches("release/*", "releases/1.0"));
        assert!(pattern_matches("*-stable", "6-0-stable"));
        assert!(!pattern_matches("*-stable", "stable"));
        assert!(pattern_matches("*", "anything/at/all"));
        assert!(pattern_matches("a*b*c", "a-x-b-y-c"));
        assert!(!pattern_matches("a*b*c", "a-c-b"));
        assert!(!pattern_matches("ab*ab", "ab"));
    }

    #[test]
    fn the_default_branch_counts_until_one_is_protected() {
        assert_eq!(effective_patterns(&[], "trunk"), ["trunk"]);
        assert_eq!(effective_patterns(&["release/*".into()], "trunk"), ["release/*"]);
    }

    #[test]
    fn requests_get_gitlabs_defaults_and_refusals() {
        let rule = ProtectedBranchParams { name: Some(" release/* ".into()), ..Default::default() }.check();
        let rule = rule.expect("valid");
        assert_eq!((rule.name.as_str(), rule.push_access_level, rule.allow_force_push), ("release/*", 40, false));
        let refused = |p: ProtectedBranchParams| p.check().expect_err("refused");
        assert_eq!(refused(ProtectedBranchParams::default()), ProtectedBranchError::MissingName);
        let named = |n: &str| ProtectedBranchParams { name: Some(n.into()), ..Default::default() };
        assert!(matches!(refused(named("a b")), ProtectedBranchError::InvalidName(_)));
        assert!(matches!(refused(named("x..y")), ProtectedBranchError::InvalidName(_)));
        assert_eq!(
            refused(ProtectedBranchParams { push_access_level: Some(50), ..named("main") }),
            ProtectedBranchError::AccessLevel("push_access_level")
        );
    }
}
