//! Users, access tokens and permission grants.

use super::port::{Database, row, sql};
use super::{Grants, Store, StoreResult, corrupt};
use crate::admin::UserRateLimit;
use crate::identity::{AccessToken, GlobalRole, Level, Permission, User};
use crate::time::Timestamp;

row! {
    pub(super) struct UserRow {
        pub(super) id: i64,
        pub(super) name: String,
        pub(super) slug: String,
        pub(super) display_name: String,
        pub(super) email: Option<String>,
        pub(super) role: String,
        pub(super) created_at: i64,
    }
}

impl UserRow {
    pub(super) fn into_user(self) -> StoreResult<User> {
        Ok(User {
            id: self.id,
            name: self.name,
            slug: self.slug,
            display_name: self.display_name,
            email: self.email,
            role: GlobalRole::parse(&self.role).ok_or_else(|| corrupt("user"))?,
            created_at: Timestamp(self.created_at),
        })
    }
}

row! {
    struct TokenRow {
        id: String,
        user_id: i64,
        name: String,
        lookup: String,
        hash: String,
        permissions: Option<String>,
        created_at: i64,
        expires_at: Option<i64>,
    }
}

impl TokenRow {
    fn into_token(self) -> StoreResult<AccessToken> {
        let permissions = match self.permissions {
            None => None,
            Some(json) => {
                let names: Vec<String> = serde_json::from_str(&json).map_err(|_| corrupt("token"))?;
                let parsed = names.iter().map(|n| n.parse::<Permission>()).collect::<Result<_, _>>();
                Some(parsed.map_err(|_| corrupt("token"))?)
            }
        };
        Ok(AccessToken {
            id: self.id,
            user_id: self.user_id,
            name: self.name,
            lookup: self.lookup,
            hash: self.hash,
            permissions,
            created_at: Timestamp(self.created_at),
            expires_at: self.expires_at.map(Timestamp),
        })
    }
}

row! {
    /// A token row with its user's columns (`u_…`), for authentication in one statement.
    struct TokenUserRow {
        id: String,
        user_id: i64,
        name: String,
        lookup: String,
        hash: String,
        permissions: Option<String>,
        created_at: i64,
        expires_at: Option<i64>,
        u_name: String,
        u_slug: String,
        u_display_name: String,
        u_email: Option<String>,
        u_role: String,
        u_created_at: i64,
        rl_capacity: Option<i64>,
        rl_fill_rate: Option<i64>,
        rl_whitelisted: Option<i64>,
    }
}

row! {
    struct GrantRow {
        target: i64,
        level: String,
        kind: String,
    }
}

/// A user's project (`P`) and repository (`R`) grants from every source (their own, their
/// groups', their personal project), `?1` the user id (`NULL`: none). A target may come more than
/// once: [`read_grants`] keeps the highest.
pub(super) const GRANTS: &str = "SELECT project_id AS target, level, 'P' AS kind FROM effective_project_grants WHERE user_id = ?1 \
     UNION ALL SELECT repository_id AS target, level, 'R' AS kind FROM effective_repository_grants WHERE user_id = ?1";

/// Reads [`GRANTS`] rows.
pub(super) fn read_grants(outcome: super::port::Outcome) -> StoreResult<Grants> {
    let mut grants = Grants::default();
    for row in outcome.read::<GrantRow>()? {
        let level = Level::parse(&row.level).ok_or_else(|| corrupt("grant"))?;
        let map = if row.kind == "P" { &mut grants.projects } else { &mut grants.repositories };
        let held = map.entry(row.target).or_insert(level);
        *held = (*held).max(level);
    }
    Ok(grants)
}

impl<D: Database> Store<D> {
    /// The user with this name or slug (case-insensitive).
    pub async fn user_by_name(&self, name: &str) -> StoreResult<Option<User>> {
        self.row::<UserRow>(sql!("SELECT * FROM users WHERE name = ?1 OR slug = ?1", name))
            .await?
            .map(UserRow::into_user)
            .transpose()
    }

    /// Users with these names or slugs, in one round trip; unknown names are left out.
    pub async fn users_by_names(&self, names: &[&str]) -> StoreResult<Vec<User>> {
        let list = serde_json::to_string(names).map_err(|e| super::StoreError::Backend(e.to_string()))?;
        self.rows::<UserRow>(sql!(
            "SELECT * FROM users WHERE name IN (SELECT value FROM json_each(?1)) \
             OR slug IN (SELECT value FROM json_each(?1))",
            list
        ))
        .await?
        .into_iter()
        .map(UserRow::into_user)
        .collect()
    }

    /// Removes a user with their tokens and grants (the schema cascades).
    pub async fn delete_user(&self, id: i64) -> StoreResult<()> {
        self.one(sql!("DELETE FROM users WHERE id = ?1", id)).await.map(drop)
    }

    /// Tokens whose lookup key is `lookup`, each with its user and the user's own rate-limit
    /// settings: authentication in one round trip.
    pub async fn tokens_by_lookup(&self, lookup: &str) -> StoreResult<Vec<(AccessToken, User, Option<UserRateLimit>)>> {
        let rows = self
            .rows::<TokenUserRow>(sql!(
                "SELECT t.*, u.name AS u_name, u.slug AS u_slug, u.display_name AS u_display_name, \
                 u.email AS u_email, u.role AS u_role, u.created_at AS u_created_at, l.capacity AS rl_capacity, \
                 l.fill_rate AS rl_fill_rate, l.whitelisted AS rl_whitelisted \
                 FROM access_tokens t JOIN users u ON u.id = t.user_id \
                 LEFT JOIN rate_limit_users l ON l.user_id = u.id WHERE t.lookup = ?1",
                lookup
            ))
            .await?;
        rows.into_iter()
            .map(|r| {
                let limit = rate_limit(r.rl_capacity, r.rl_fill_rate, r.rl_whitelisted);
                let user = UserRow {
                    id: r.user_id,
                    name: r.u_name,
                    slug: r.u_slug,
                    display_name: r.u_display_name,
                    email: r.u_email,
                    role: r.u_role,
                    created_at: r.u_created_at,
                }
                .into_user()?;
                let token = TokenRow {
                    id: r.id,
                    user_id: r.user_id,
                    name: r.name,
                    lookup: r.lookup,
                    hash: r.hash,
                    permissions: r.permissions,
                    created_at: r.created_at,
                    expires_at: r.expires_at,
                };
                Ok((token.into_token()?, user, limit))
            })
            .collect()
    }

    /// One page of a user's tokens, newest first, and whether more follow.
    pub async fn list_tokens(&self, user_id: i64, offset: u64, limit: u64) -> StoreResult<(Vec<AccessToken>, bool)> {
        let rows = self
            .rows::<TokenRow>(sql!(
                "SELECT * FROM access_tokens WHERE user_id = ?1 ORDER BY created_at DESC, id LIMIT ?2 OFFSET ?3",
                user_id,
                page_limit(limit),
                page_offset(offset)
            ))
            .await?;
        let tokens = rows.into_iter().map(TokenRow::into_token).collect::<StoreResult<Vec<_>>>()?;
        Ok(super::split_page(tokens, limit))
    }

    /// Adds a token.
    pub async fn insert_token(&self, t: &AccessToken) -> StoreResult<()> {
        let permissions = match &t.permissions {
            Some(ps) => Some(
                serde_json::to_string(&ps.iter().map(ToString::to_string).collect::<Vec<_>>())
                    .map_err(|e| super::StoreError::Backend(e.to_string()))?,
            ),
            None => None,
        };
        self.one(sql!(
            "INSERT INTO access_tokens (id, user_id, name, lookup, hash, permissions, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            &t.id,
            t.user_id,
            &t.name,
            &t.lookup,
            &t.hash,
            permissions,
            t.created_at.millis(),
            t.expires_at.map(Timestamp::millis)
        ))
        .await
        .map(drop)
    }

    /// Removes a user's token; false if there was none.
    pub async fn delete_token(&self, user_id: i64, token_id: &str) -> StoreResult<bool> {
        let gone =
            self.one(sql!("DELETE FROM access_tokens WHERE user_id = ?1 AND id = ?2", user_id, token_id)).await?;
        Ok(gone.changes > 0)
    }

    /// Sets (`Some`) or removes (`None`) users' grants on a project: one statement.
    pub async fn set_project_grants(&self, project_id: i64, user_ids: &[i64], level: Option<Level>) -> StoreResult<()> {
        let statement = grant_statement("project_grants", "project_id", "user_id", project_id, user_ids, level)?;
        self.one(statement).await.map(drop)
    }

    /// Sets (`Some`) or removes (`None`) users' grants on a repository, all in one batch.
    pub async fn set_repository_grants(
        &self,
        repository_id: i64,
        user_ids: &[i64],
        level: Option<Level>,
    ) -> StoreResult<()> {
        let statement =
            grant_statement("repository_grants", "repository_id", "user_id", repository_id, user_ids, level)?;
        self.one(statement).await.map(drop)
    }

    /// Sets users' global roles: one statement.
    pub async fn set_global_roles(&self, user_ids: &[i64], role: GlobalRole) -> StoreResult<()> {
        let ids = serde_json::to_string(user_ids).map_err(|e| super::StoreError::Backend(e.to_string()))?;
        self.one(sql!("UPDATE users SET role = ?2 WHERE id IN (SELECT value FROM json_each(?1))", ids, role.as_str()))
            .await
            .map(drop)
    }
}

/// The upsert (`Some` level) or delete (`None`) of the grants of `holders` (user or group ids, in
/// `holder` column) on `target`: one statement whatever their number, the ids bound as one JSON
/// list, so a request naming a thousand users stays one statement of three parameters.
pub(super) fn grant_statement(
    table: &str,
    column: &str,
    holder: &str,
    target: i64,
    holders: &[i64],
    level: Option<Level>,
) -> StoreResult<super::port::Statement> {
    let ids = serde_json::to_string(holders).map_err(|e| super::StoreError::Backend(e.to_string()))?;
    Ok(match level {
        // `WHERE true`: SQLite's rule for an upsert whose rows come from a SELECT.
        Some(l) => sql!(
            format!(
                "INSERT INTO {table} ({column}, {holder}, level) SELECT ?1, value, ?3 FROM json_each(?2) WHERE true \
                 ON CONFLICT ({column}, {holder}) DO UPDATE SET level = excluded.level"
            ),
            target,
            ids,
            l.as_str()
        ),
        None => sql!(
            format!("DELETE FROM {table} WHERE {column} = ?1 AND {holder} IN (SELECT value FROM json_each(?2))"),
            target,
            ids
        ),
    })
}

/// A user's own rate-limit settings from a `LEFT JOIN rate_limit_users` (all `NULL`: none).
pub(super) fn rate_limit(
    capacity: Option<i64>,
    fill_rate: Option<i64>,
    whitelisted: Option<i64>,
) -> Option<UserRateLimit> {
    let whitelisted = whitelisted?;
    let settings = match (capacity.and_then(|c| u32::try_from(c).ok()), fill_rate.and_then(|f| u32::try_from(f).ok())) {
        (Some(capacity), Some(fill_rate)) => Some(crate::admin::BucketSettings { capacity, fill_rate }),
        _ => None,
    };
    Some(UserRateLimit { settings, whitelisted: whitelisted != 0 })
}

/// A page size as a SQL parameter.
pub(super) fn page_limit(limit: u64) -> i64 {
    // One more than asked, to learn whether another page follows.
    i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1
}

/// A page offset as a SQL parameter.
pub(super) fn page_offset(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}
