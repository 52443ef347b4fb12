//! Instance administration: the instance's settings, passwords and user settings, rate-limit
//! settings and history, and repository labels and archiving.

use super::identity::{UserRow, page_limit, page_offset};
use super::port::{Database, Statement, row, sql};
use super::registry::{REPO_SELECT, REPO_VISIBLE, RepoRow};
use super::{Store, StoreError, StoreResult, Viewer, split_page};
use crate::admin::{InstanceSettings, UserRateLimit};
use crate::identity::User;
use crate::registry::Repository;
use crate::time::Timestamp;

row! {
    struct SettingRow {
        name: String,
        value: String,
    }
}

row! {
    struct PasswordRow {
        password_hash: Option<String>,
    }
}

row! {
    /// A user's own rate-limit columns (`NULL` each when they have none).
    struct LimitColumns {
        capacity: Option<i64>,
        fill_rate: Option<i64>,
        whitelisted: Option<i64>,
    }
}

impl LimitColumns {
    fn limit(self) -> Option<UserRateLimit> {
        super::identity::rate_limit(self.capacity, self.fill_rate, self.whitelisted)
    }
}

row! {
    struct LabelRow {
        name: String,
    }
}

row! {
    struct CountRow {
        n: i64,
    }
}

/// What a password sign-in reads about its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordSignIn {
    /// The user.
    pub user: User,
    /// Their stored password, if they have one.
    pub stored: Option<String>,
    /// Their own rate-limit settings, if any.
    pub rate_limit: Option<UserRateLimit>,
}

/// A user with their rate-limit settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRateLimitRecord {
    /// The user.
    pub user: User,
    /// Their settings.
    pub limit: UserRateLimit,
}

/// A user's rejections by the rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejections {
    /// The user.
    pub user: User,
    /// How often they were refused.
    pub count: i64,
    /// When last.
    pub last: Timestamp,
}

/// How the rate-limit history is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryOrder {
    /// Latest rejection first.
    Newest,
    /// Most rejections first.
    Frequency,
}

fn json(value: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(e.to_string()))
}

/// The statement that stores one instance setting (`None`: back to its default).
fn setting_statement(name: &str, value: Option<&str>) -> Statement {
    match value {
        Some(v) => sql!(
            "INSERT INTO instance_settings (name, value) VALUES (?1, ?2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            name,
            v
        ),
        None => sql!("DELETE FROM instance_settings WHERE name = ?1", name),
    }
}

impl<D: Database> Store<D> {
    /// Every instance setting, in one statement.
    pub async fn instance_settings(&self) -> StoreResult<InstanceSettings> {
        let rows = self.rows::<SettingRow>(sql!("SELECT name, value FROM instance_settings")).await?;
        Ok(InstanceSettings::from_rows(rows.into_iter().map(|r| (r.name, r.value))))
    }

    /// Stores one instance setting as JSON (`None`: back to its default).
    pub async fn put_setting(&self, name: &str, value: Option<&impl serde::Serialize>) -> StoreResult<()> {
        let text = value.map(json).transpose()?;
        self.one(setting_statement(name, text.as_deref())).await.map(drop)
    }

    /// Stores several instance settings (JSON text; `None`: back to the default) in one batch.
    pub async fn put_settings(&self, settings: &[(&str, Option<String>)]) -> StoreResult<()> {
        self.batch(settings.iter().map(|(name, value)| setting_statement(name, value.as_deref())).collect())
            .await
            .map(drop)
    }

    /// How many users exist (the license counts them).
    pub async fn count_users(&self) -> StoreResult<i64> {
        Ok(self.row::<CountRow>(sql!("SELECT COUNT(*) AS n FROM users")).await?.map_or(0, |r| r.n))
    }

    /// A user by name with their stored password (if they have one) and their own rate-limit
    /// settings: a password sign-in in one round trip.
    pub async fn user_with_password(&self, name: &str) -> StoreResult<Option<PasswordSignIn>> {
        let row = self
            .row::<(UserRow, (PasswordRow, LimitColumns))>(sql!(
                "SELECT u.*, l.capacity, l.fill_rate, l.whitelisted FROM users u \
                 LEFT JOIN rate_limit_users l ON l.user_id = u.id WHERE u.name = ?1 OR u.slug = ?1",
                name
            ))
            .await?;
        let Some((user, (password, limit))) = row else { return Ok(None) };
        Ok(Some(PasswordSignIn { user: user.into_user()?, stored: password.password_hash, rate_limit: limit.limit() }))
    }

    /// A user's stored password, if they have one.
    pub async fn password_of(&self, user_id: i64) -> StoreResult<Option<String>> {
        let row = self.row::<PasswordRow>(sql!("SELECT password_hash FROM users WHERE id = ?1", user_id)).await?;
        Ok(row.and_then(|r| r.password_hash))
    }

    /// Sets a user's stored password.
    pub async fn set_password(&self, user_id: i64, stored: &str) -> StoreResult<()> {
        self.one(sql!("UPDATE users SET password_hash = ?2 WHERE id = ?1", user_id, stored)).await.map(drop)
    }

    /// Adds a user (with a password, if given), unless `max_users` (the license's count) would
    /// be passed: the count is checked in the same statement, so concurrent creations cannot
    /// overshoot it. `Ok(None)`: refused by the count; `Conflict` if the name is taken.
    pub async fn insert_user(
        &self,
        u: &crate::identity::NewUser,
        password_hash: Option<&str>,
        max_users: Option<i64>,
    ) -> StoreResult<Option<User>> {
        let row = self
            .row::<UserRow>(sql!(
                "INSERT INTO users (name, slug, display_name, email, role, created_at, password_hash) \
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE ?8 IS NULL OR (SELECT COUNT(*) FROM users) < ?8 \
                 RETURNING *",
                &u.name,
                &u.slug,
                &u.display_name,
                u.email.as_deref(),
                u.role.as_str(),
                u.created_at.millis(),
                password_hash,
                max_users
            ))
            .await?;
        row.map(UserRow::into_user).transpose()
    }

    /// Changes a user's display name and e-mail address.
    pub async fn update_user_details(&self, user_id: i64, display_name: &str, email: Option<&str>) -> StoreResult<()> {
        self.one(sql!("UPDATE users SET display_name = ?2, email = ?3 WHERE id = ?1", user_id, display_name, email))
            .await
            .map(drop)
    }

    /// Records the content type of a user's avatar (`None`: back to the default).
    pub async fn set_avatar_type(&self, user_id: i64, content_type: Option<&str>) -> StoreResult<()> {
        self.one(sql!("UPDATE users SET avatar_type = ?2 WHERE id = ?1", user_id, content_type)).await.map(drop)
    }

    /// The content type of a user's avatar, if they uploaded one; `None` outside: no such user.
    pub async fn avatar_type(&self, slug: &str) -> StoreResult<Option<(User, Option<String>)>> {
        row! {
            struct AvatarColumn {
                avatar_type: Option<String>,
            }
        }
        let row =
            self.row::<(UserRow, AvatarColumn)>(sql!("SELECT * FROM users WHERE name = ?1 OR slug = ?1", slug)).await?;
        row.map(|(user, avatar)| Ok((user.into_user()?, avatar.avatar_type))).transpose()
    }

    /// A user's settings: name → JSON value.
    pub async fn user_settings(&self, user_id: i64) -> StoreResult<serde_json::Map<String, serde_json::Value>> {
        let rows = self
            .rows::<SettingRow>(sql!("SELECT name, value FROM user_settings WHERE user_id = ?1 ORDER BY name", user_id))
            .await?;
        Ok(rows.into_iter().filter_map(|r| Some((r.name, serde_json::from_str(&r.value).ok()?))).collect())
    }

    /// Merges settings into a user's (a JSON `null` removes one), in one batch.
    pub async fn merge_user_settings(
        &self,
        user_id: i64,
        settings: &serde_json::Map<String, serde_json::Value>,
    ) -> StoreResult<()> {
        let mut statements = Vec::with_capacity(settings.len());
        for (name, value) in settings {
            statements.push(if value.is_null() {
                sql!("DELETE FROM user_settings WHERE user_id = ?1 AND name = ?2", user_id, name)
            } else {
                sql!(
                    "INSERT INTO user_settings (user_id, name, value) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (user_id, name) DO UPDATE SET value = excluded.value",
                    user_id,
                    name,
                    json(value)?
                )
            });
        }
        if statements.is_empty() {
            return Ok(());
        }
        self.batch(statements).await.map(drop)
    }

    /// One page of users with rate-limit settings of their own, `filter` matching a part of the
    /// name (case-insensitive), and whether more follow.
    pub async fn rate_limit_users(
        &self,
        filter: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<UserRateLimitRecord>, bool)> {
        let rows = self
            .rows::<(UserRow, LimitColumns)>(sql!(
                format!(
                    "SELECT u.*, l.capacity, l.fill_rate, l.whitelisted FROM rate_limit_users l \
                     JOIN users u ON u.id = l.user_id WHERE ?1 IS NULL OR {} OR {} \
                     ORDER BY u.name LIMIT ?2 OFFSET ?3",
                    super::limits::contains("u.name", 1),
                    super::limits::contains("u.display_name", 1)
                ),
                filter,
                page_limit(limit),
                page_offset(offset)
            ))
            .await?;
        let records = rows
            .into_iter()
            .filter_map(|(user, columns)| Some((user, columns.limit()?)))
            .map(|(user, limit)| Ok(UserRateLimitRecord { user: user.into_user()?, limit }))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(split_page(records, limit))
    }

    /// A user's own rate-limit settings, if they have any.
    pub async fn rate_limit_of(&self, user_id: i64) -> StoreResult<Option<UserRateLimit>> {
        let row = self
            .row::<LimitColumns>(sql!(
                "SELECT capacity, fill_rate, whitelisted FROM rate_limit_users WHERE user_id = ?1",
                user_id
            ))
            .await?;
        Ok(row.and_then(LimitColumns::limit))
    }

    /// Gives users the same rate-limit settings, in one batch.
    pub async fn set_rate_limits(&self, user_ids: &[i64], limit: UserRateLimit) -> StoreResult<()> {
        let (capacity, fill_rate) = limit.settings.map_or((None, None), |s| (Some(s.capacity), Some(s.fill_rate)));
        let statements = user_ids
            .iter()
            .map(|&id| {
                sql!(
                    "INSERT INTO rate_limit_users (user_id, capacity, fill_rate, whitelisted) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (user_id) DO UPDATE SET capacity = excluded.capacity, \
                     fill_rate = excluded.fill_rate, whitelisted = excluded.whitelisted",
                    id,
                    capacity.map(i64::from),
                    fill_rate.map(i64::from),
                    limit.whitelisted
                )
            })
            .collect();
        self.batch(statements).await.map(drop)
    }

    /// Removes a user's own rate-limit settings; false if they had none.
    pub async fn delete_rate_limit(&self, user_id: i64) -> StoreResult<bool> {
        Ok(self.one(sql!("DELETE FROM rate_limit_users WHERE user_id = ?1", user_id)).await?.changes > 0)
    }

    /// Counts a rejection of a user's request.
    pub async fn record_rejection(&self, user_id: i64, now: Timestamp) -> StoreResult<()> {
        self.one(sql!(
            "INSERT INTO rate_limit_rejections (user_id, reject_count, last_reject_at) VALUES (?1, 1, ?2) \
             ON CONFLICT (user_id) DO UPDATE SET reject_count = reject_count + 1, last_reject_at = excluded.last_reject_at",
            user_id,
            now.millis()
        ))
        .await
        .map(drop)
    }

    /// One page of the rate limit's history, and whether more follow.
    pub async fn rejections(
        &self,
        order: HistoryOrder,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<Rejections>, bool)> {
        row! {
            struct RejectionColumns {
                reject_count: i64,
                last_reject_at: i64,
            }
        }
        let order_by = match order {
            HistoryOrder::Newest => "h.last_reject_at DESC, u.name",
            HistoryOrder::Frequency => "h.reject_count DESC, h.last_reject_at DESC, u.name",
        };
        let rows = self
            .rows::<(UserRow, RejectionColumns)>(sql!(
                format!(
                    "SELECT u.*, h.reject_count, h.last_reject_at FROM rate_limit_rejections h \
                     JOIN users u ON u.id = h.user_id ORDER BY {order_by} LIMIT ?1 OFFSET ?2"
                ),
                page_limit(limit),
                page_offset(offset)
            ))
            .await?;
        let records = rows
            .into_iter()
            .map(|(user, r)| {
                Ok(Rejections { user: user.into_user()?, count: r.reject_count, last: Timestamp(r.last_reject_at) })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(split_page(records, limit))
    }

    /// Labels a repository (labelling twice is one label).
    pub async fn add_label(&self, repository_id: i64, name: &str) -> StoreResult<()> {
        self.one(sql!(
            "INSERT OR IGNORE INTO repository_labels (repository_id, name) VALUES (?1, ?2)",
            repository_id,
            name
        ))
        .await
        .map(drop)
    }

    /// Takes a label off a repository; false if it did not have it.
    pub async fn remove_label(&self, repository_id: i64, name: &str) -> StoreResult<bool> {
        let gone = self
            .one(sql!("DELETE FROM repository_labels WHERE repository_id = ?1 AND name = ?2", repository_id, name))
            .await?;
        Ok(gone.changes > 0)
    }

    /// One page of a repository's labels, by name.
    pub async fn labels_of(&self, repository_id: i64, offset: u64, limit: u64) -> StoreResult<(Vec<String>, bool)> {
        let rows = self
            .rows::<LabelRow>(sql!(
                "SELECT name FROM repository_labels WHERE repository_id = ?1 ORDER BY name LIMIT ?2 OFFSET ?3",
                repository_id,
                page_limit(limit),
                page_offset(offset)
            ))
            .await?;
        Ok(split_page(rows.into_iter().map(|r| r.name).collect(), limit))
    }

    /// One page of the labels on repositories the viewer may see, starting with `prefix`.
    pub async fn labels(
        &self,
        viewer: Viewer,
        prefix: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<String>, bool)> {
        let pattern = prefix.map(str::to_ascii_lowercase);
        let rows = self
            .rows::<LabelRow>(sql!(
                format!(
                    "SELECT DISTINCT l.name FROM repository_labels l JOIN repositories r ON r.id = l.repository_id \
                     JOIN projects p ON p.id = r.project_id WHERE {REPO_VISIBLE} AND (?2 IS NULL OR substr(l.name, 1, length(?2)) = ?2) \
                     ORDER BY l.name LIMIT ?3 OFFSET ?4"
                ),
                viewer.param(),
                pattern,
                page_limit(limit),
                page_offset(offset)
            ))
            .await?;
        Ok(split_page(rows.into_iter().map(|r| r.name).collect(), limit))
    }

    /// One page of the repositories the viewer may see that carry a label.
    pub async fn labeled_repositories(
        &self,
        viewer: Viewer,
        label: &str,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<Repository>, bool)> {
        let rows = self
            .rows::<RepoRow>(sql!(
                format!(
                    "{REPO_SELECT} WHERE {REPO_VISIBLE} AND EXISTS (SELECT 1 FROM repository_labels l \
                     WHERE l.repository_id = r.id AND l.name = ?2) ORDER BY p.key, r.slug LIMIT ?3 OFFSET ?4"
                ),
                viewer.param(),
                label,
                page_limit(limit),
                page_offset(offset)
            ))
            .await?;
        Ok(split_page(rows.into_iter().map(Repository::from).collect(), limit))
    }

    /// Changes a repository's settings (`archived`, description, visibility, forking, default branch).
    pub async fn update_repository(&self, r: &Repository) -> StoreResult<()> {
        self.one(sql!(
            "UPDATE repositories SET archived = ?2, description = ?3, public = ?4, forkable = ?5, \
             default_branch = ?6 WHERE id = ?1",
            r.id,
            r.archived,
            r.description.as_deref(),
            r.public,
            r.forkable,
            &r.default_branch
        ))
        .await
        .map(drop)
    }
}
