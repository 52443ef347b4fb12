//! GitLab's protected branches, per repository.

use super::port::{Database, Outcome, row, sql};
use super::{Store, StoreResult};
use crate::mirrors::protected::ProtectedBranch;
use crate::time::Timestamp;

row! {
    struct ProtectedRow {
        id: i64,
        name: String,
        push_access_level: i64,
        merge_access_level: i64,
        unprotect_access_level: i64,
        allow_force_push: i64,
        code_owner_approval_required: i64,
    }
}

impl From<ProtectedRow> for ProtectedBranch {
    fn from(r: ProtectedRow) -> Self {
        let level = |v: i64| u64::try_from(v).unwrap_or(40);
        Self {
            id: r.id,
            name: r.name,
            push_access_level: level(r.push_access_level),
            merge_access_level: level(r.merge_access_level),
            unprotect_access_level: level(r.unprotect_access_level),
            allow_force_push: r.allow_force_push != 0,
            code_owner_approval_required: r.code_owner_approval_required != 0,
        }
    }
}

row! {
    struct NameRow {
        name: String,
    }
}

/// Reads `SELECT name FROM protected_branches …` rows.
pub(super) fn read_names(outcome: Outcome) -> StoreResult<Vec<String>> {
    Ok(outcome.read::<NameRow>()?.into_iter().map(|r| r.name).collect())
}

const COLUMNS: &str = "id, name, push_access_level, merge_access_level, unprotect_access_level, allow_force_push, \
     code_owner_approval_required";

impl<D: Database> Store<D> {
    /// A repository's protected branches by name, `search` a part of the name, and the total.
    pub async fn protected_branches(
        &self,
        repository_id: i64,
        search: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<ProtectedBranch>, u64)> {
        let pattern = search;
        let matches = super::limits::contains("name", 2);
        let mut out = self
            .batch(vec![
                sql!(
                    format!(
                        "SELECT {COLUMNS} FROM protected_branches WHERE repository_id = ?1 \
                         AND (?2 IS NULL OR {matches}) ORDER BY name LIMIT ?3 OFFSET ?4"
                    ),
                    repository_id,
                    pattern,
                    i64::try_from(limit).unwrap_or(i64::MAX),
                    i64::try_from(offset).unwrap_or(i64::MAX)
                ),
                sql!(
                    format!("SELECT COUNT(*) AS n FROM protected_branches WHERE repository_id = ?1 AND (?2 IS NULL OR {matches})"),
                    repository_id,
                    pattern
                ),
            ])
            .await?;
        let rules = super::nth(&mut out, 0)?.read::<ProtectedRow>()?.into_iter().map(Into::into).collect();
        let total = super::nth(&mut out, 1)?.first::<super::registry::CountRow>()?.map_or(0, |c| c.n);
        Ok((rules, total))
    }

    /// One protected branch rule by its exact name.
    pub async fn protected_branch(&self, repository_id: i64, name: &str) -> StoreResult<Option<ProtectedBranch>> {
        let row = self
            .row::<ProtectedRow>(sql!(
                format!("SELECT {COLUMNS} FROM protected_branches WHERE repository_id = ?1 AND name = ?2"),
                repository_id,
                name
            ))
            .await?;
        Ok(row.map(Into::into))
    }

    /// Protects a branch name or pattern; `None` if the repository already has that rule.
    pub async fn insert_protected_branch(
        &self,
        repository_id: i64,
        rule: &ProtectedBranch,
        now: Timestamp,
    ) -> StoreResult<Option<ProtectedBranch>> {
        let level = |v: u64| i64::try_from(v).unwrap_or(40);
        let row = self
            .row::<ProtectedRow>(sql!(
                format!(
                    "INSERT INTO protected_branches (repository_id, name, push_access_level, merge_access_level, \
                     unprotect_access_level, allow_force_push, code_owner_approval_required, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (repository_id, name) DO NOTHING \
                     RETURNING {COLUMNS}"
                ),
                repository_id,
                &rule.name,
                level(rule.push_access_level),
                level(rule.merge_access_level),
                level(rule.unprotect_access_level),
                rule.allow_force_push,
                rule.code_owner_approval_required,
                now.millis()
            ))
            .await?;
        Ok(row.map(Into::into))
    }

    /// Unprotects a branch name or pattern; false if there was no such rule.
    pub async fn delete_protected_branch(&self, repository_id: i64, name: &str) -> StoreResult<bool> {
        let out = self
            .one(sql!("DELETE FROM protected_branches WHERE repository_id = ?1 AND name = ?2", repository_id, name))
            .await?;
        Ok(out.changes > 0)
    }
}
