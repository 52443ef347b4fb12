//! Groups, their members and their grants; and the users filter that selects by them.

use super::identity::{UserRow, page_limit, page_offset};
use super::port::{Database, Statement, Value, row, sql};
use super::{Store, StoreResult, corrupt, nth, split_page};
use crate::identity::groups::{Group, PermissionFilter, UserFilter};
use crate::identity::{GlobalRole, Level, User};
use crate::time::Timestamp;

row! {
    struct GroupRow {
        id: i64,
        name: String,
    }
}

impl From<GroupRow> for Group {
    fn from(r: GroupRow) -> Self {
        Self { id: r.id, name: r.name }
    }
}

row! {
    struct GroupGrantRow {
        id: i64,
        name: String,
        level: String,
    }
}

/// What a group grant is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupGrantOn {
    /// A project, by id.
    Project(i64),
    /// A repository, by id.
    Repository(i64),
}

impl GroupGrantOn {
    fn table(self) -> (&'static str, &'static str, i64) {
        match self {
            Self::Project(id) => ("project_group_grants", "project_id", id),
            Self::Repository(id) => ("repository_group_grants", "repository_id", id),
        }
    }
}

/// A level's rank in SQL (`READ` 1 < `WRITE` 2 < `ADMIN` 3), for "at least" comparisons.
const LEVEL_RANK: &str = "(CASE g.level WHEN 'ADMIN' THEN 3 WHEN 'WRITE' THEN 2 ELSE 1 END)";

fn rank(level: Level) -> i64 {
    match level {
        Level::Read => 1,
        Level::Write => 2,
        Level::Admin => 3,
    }
}

fn role_rank(role: GlobalRole) -> i64 {
    match role {
        GlobalRole::User => 1,
        GlobalRole::Admin => 2,
        GlobalRole::SysAdmin => 3,
    }
}

/// A user's name, display name or e-mail address contains the text bound as `?{param}`.
fn user_matches(param: usize) -> String {
    let c = |column: &str| super::limits::contains(column, param);
    format!("({} OR {} OR {})", c("u.name"), c("u.display_name"), c("u.email"))
}

/// The users statement for `filter`, one page: every condition is a clause of one `SELECT`, each
/// permission filter an `EXISTS` over the effective grants (own, groups', personal), as access
/// checks read them.
fn users_statement(filter: &UserFilter, offset: u64, limit: u64) -> Statement {
    let mut params: Vec<Value> = vec![
        filter.text.as_deref().into(),
        page_limit(limit).into(),
        page_offset(offset).into(),
        filter.group.as_deref().into(),
    ];
    let mut clauses = vec![
        format!("(?1 IS NULL OR {})", user_matches(1)),
        "(?4 IS NULL OR EXISTS (SELECT 1 FROM group_members m JOIN groups gr ON gr.id = m.group_id \
         WHERE m.user_id = u.id AND gr.name = ?4))"
            .to_owned(),
    ];
    let role = "(CASE u.role WHEN 'SYS_ADMIN' THEN 3 WHEN 'ADMIN' THEN 2 ELSE 1 END)";
    for permission in &filter.permissions {
        let next = params.len() + 1;
        match permission {
            PermissionFilter::Global(least) => {
                params.push(role_rank(*least).into());
                clauses.push(format!("{role} >= ?{next}"));
            }
            PermissionFilter::Project { key, level } => {
                params.push(key.as_str().into());
                params.push(rank(*level).into());
                let (k, l) = (next, next + 1);
                clauses.push(format!(
                    "EXISTS (SELECT 1 FROM projects p WHERE p.key = ?{k} AND (u.role IN ('ADMIN', 'SYS_ADMIN') \
                     OR (?{l} = 1 AND p.public = 1) \
                     OR EXISTS (SELECT 1 FROM effective_project_grants g WHERE g.project_id = p.id \
                       AND g.user_id = u.id AND {LEVEL_RANK} >= ?{l})))"
                ));
            }
            PermissionFilter::Repository { key, slug, level } => {
                params.push(key.as_str().into());
                params.push(slug.as_str().into());
                params.push(rank(*level).into());
                let (k, s, l) = (next, next + 1, next + 2);
                clauses.push(format!(
                    "EXISTS (SELECT 1 FROM repositories r JOIN projects p ON p.id = r.project_id \
                     WHERE p.key = ?{k} AND r.slug = ?{s} AND (u.role IN ('ADMIN', 'SYS_ADMIN') \
                     OR (?{l} = 1 AND (r.public = 1 OR p.public = 1)) \
                     OR EXISTS (SELECT 1 FROM effective_repository_grants g WHERE g.repository_id = r.id \
                       AND g.user_id = u.id AND {LEVEL_RANK} >= ?{l}) \
                     OR EXISTS (SELECT 1 FROM effective_project_grants g WHERE g.project_id = p.id \
                       AND g.user_id = u.id AND {LEVEL_RANK} >= ?{l})))"
                ));
            }
        }
    }
    let sql = format!("SELECT u.* FROM users u WHERE {} ORDER BY u.name LIMIT ?2 OFFSET ?3", clauses.join(" AND "));
    Statement::new(sql, params)
}

impl<D: Database> Store<D> {
    /// One page of users matching `filter`, by name, and whether more follow: one statement.
    pub async fn list_users(&self, filter: &UserFilter, offset: u64, limit: u64) -> StoreResult<(Vec<User>, bool)> {
        let rows = self.rows::<UserRow>(users_statement(filter, offset, limit)).await?;
        let users = rows.into_iter().map(UserRow::into_user).collect::<StoreResult<Vec<_>>>()?;
        Ok(split_page(users, limit))
    }

    /// One page of groups by name, `filter` a part of the name, and whether more follow.
    pub async fn list_groups(&self, filter: Option<&str>, offset: u64, limit: u64) -> StoreResult<(Vec<Group>, bool)> {
        let rows = self
            .rows::<GroupRow>(sql!(
                format!(
                    "SELECT id, name FROM groups WHERE (?1 IS NULL OR {}) ORDER BY name LIMIT ?2 OFFSET ?3",
                    super::limits::contains("name", 1)
                ),
                filter,
                page_limit(limit),
                page_offset(offset)
            ))
            .await?;
        Ok(split_page(rows.into_iter().map(Group::from).collect(), limit))
    }

    /// Adds a group; `None` if one of that name (case-insensitive) exists.
    pub async fn insert_group(&self, name: &str, now: Timestamp) -> StoreResult<Option<Group>> {
        let row = self
            .row::<GroupRow>(sql!(
                "INSERT INTO groups (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING RETURNING id, name",
                name,
                now.millis()
            ))
            .await?;
        Ok(row.map(Group::from))
    }

    /// Removes a group with its memberships and grants (the schema cascades); `None` if none.
    pub async fn delete_group(&self, name: &str) -> StoreResult<Option<Group>> {
        let row = self.row::<GroupRow>(sql!("DELETE FROM groups WHERE name = ?1 RETURNING id, name", name)).await?;
        Ok(row.map(Group::from))
    }

    /// Groups with these names, in one round trip; unknown names are left out.
    pub async fn groups_by_names(&self, names: &[&str]) -> StoreResult<Vec<Group>> {
        let list = serde_json::to_string(names).map_err(|e| super::StoreError::Backend(e.to_string()))?;
        let rows = self
            .rows::<GroupRow>(sql!("SELECT id, name FROM groups WHERE name IN (SELECT value FROM json_each(?1))", list))
            .await?;
        Ok(rows.into_iter().map(Group::from).collect())
    }

    /// Makes each user a member of each group (existing memberships stay): one statement, the
    /// ids bound as two JSON lists whatever their number.
    pub async fn add_members(&self, group_ids: &[i64], user_ids: &[i64]) -> StoreResult<()> {
        let json = |ids: &[i64]| serde_json::to_string(ids).map_err(|e| super::StoreError::Backend(e.to_string()));
        self.one(sql!(
            "INSERT OR IGNORE INTO group_members (group_id, user_id) \
             SELECT g.value, u.value FROM json_each(?1) g, json_each(?2) u",
            json(group_ids)?,
            json(user_ids)?
        ))
        .await
        .map(drop)
    }

    /// Takes a user out of a group; false if they were not in it.
    pub async fn remove_member(&self, group_id: i64, user_id: i64) -> StoreResult<bool> {
        let out =
            self.one(sql!("DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2", group_id, user_id)).await?;
        Ok(out.changes > 0)
    }

    /// The group so named and one page of its members (`members`) or of the users outside it,
    /// `filter` a part of the name, display name or e-mail: one round trip.
    pub async fn group_members(
        &self,
        group: &str,
        members: bool,
        filter: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> StoreResult<Option<(Vec<User>, bool)>> {
        let inside = if members { "EXISTS" } else { "NOT EXISTS" };
        let mut out = self
            .batch(vec![
                sql!("SELECT id, name FROM groups WHERE name = ?1", group),
                sql!(
                    format!(
                        "SELECT u.* FROM users u WHERE {inside} (SELECT 1 FROM group_members m JOIN groups gr \
                         ON gr.id = m.group_id WHERE m.user_id = u.id AND gr.name = ?1) \
                         AND (?2 IS NULL OR {}) ORDER BY u.name LIMIT ?3 OFFSET ?4",
                        user_matches(2)
                    ),
                    group,
                    filter,
                    page_limit(limit),
                    page_offset(offset)
                ),
            ])
            .await?;
        if nth(&mut out, 0)?.first::<GroupRow>()?.is_none() {
            return Ok(None);
        }
        let users = nth(&mut out, 1)?.read::<UserRow>()?.into_iter().map(UserRow::into_user);
        Ok(Some(split_page(users.collect::<StoreResult<Vec<_>>>()?, limit)))
    }

    /// One page of the groups granted something on `on`, by name, with their levels.
    pub async fn group_grants(
        &self,
        on: GroupGrantOn,
        filter: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<(Group, Level)>, bool)> {
        let (table, column, target) = on.table();
        let rows = self
            .rows::<GroupGrantRow>(sql!(
                format!(
                    "SELECT gr.id AS id, gr.name AS name, g.level AS level FROM {table} g \
                     JOIN groups gr ON gr.id = g.group_id WHERE g.{column} = ?1 AND (?2 IS NULL OR {}) \
                     ORDER BY gr.name LIMIT ?3 OFFSET ?4",
                    super::limits::contains("gr.name", 2)
                ),
                target,
                filter,
                page_limit(limit),
                page_offset(offset)
            ))
            .await?;
        let grants = rows
            .into_iter()
            .map(|r| {
                let level = Level::parse(&r.level).ok_or_else(|| corrupt("group grant"))?;
                Ok((Group { id: r.id, name: r.name }, level))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(split_page(grants, limit))
    }

    /// Sets (`Some`) or removes (`None`) groups' grants on `on`: one statement.
    pub async fn set_group_grants(&self, on: GroupGrantOn, group_ids: &[i64], level: Option<Level>) -> StoreResult<()> {
        let (table, column, target) = on.table();
        let statement = super::identity::grant_statement(table, column, "group_id", target, group_ids, level)?;
        self.one(statement).await.map(drop)
    }
}
