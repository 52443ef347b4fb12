//! Users' SSH keys, and the SSH side of farm nodes and push mirrors.

use super::identity::{UserRow, page_limit, page_offset, rate_limit};
use super::port::{Database, row, sql};
use super::{Store, StoreResult, corrupt, split_page};
use crate::admin::UserRateLimit;
use crate::identity::User;
use crate::ssh::{KeyAlgorithm, SshKey};
use crate::time::Timestamp;

row! {
    struct SshKeyRow {
        id: i64,
        user_id: i64,
        label: String,
        text: String,
        algorithm: String,
        bits: i64,
        fingerprint: String,
        created_at: i64,
        expires_at: Option<i64>,
    }
}

impl SshKeyRow {
    fn into_key(self) -> StoreResult<SshKey> {
        Ok(SshKey {
            id: self.id,
            user_id: self.user_id,
            label: self.label,
            text: self.text,
            algorithm: KeyAlgorithm::parse(&self.algorithm).ok_or_else(|| corrupt("ssh key"))?,
            bits: u32::try_from(self.bits).map_err(|_| corrupt("ssh key"))?,
            fingerprint: self.fingerprint,
            created_at: Timestamp(self.created_at),
            expires_at: self.expires_at.map(Timestamp),
        })
    }
}

row! {
    /// A key's owner with their own rate-limit settings, for signing in with the key.
    struct KeyOwnerRow {
        expires_at: Option<i64>,
        id: i64,
        name: String,
        slug: String,
        display_name: String,
        email: Option<String>,
        role: String,
        created_at: i64,
        rl_capacity: Option<i64>,
        rl_fill_rate: Option<i64>,
        rl_whitelisted: Option<i64>,
    }
}

impl<D: Database> Store<D> {
    /// Adds a key (its `id` is assigned); `None` if a key with its fingerprint is registered
    /// already (to anyone).
    pub async fn insert_ssh_key(&self, key: &SshKey) -> StoreResult<Option<SshKey>> {
        self.row::<SshKeyRow>(sql!(
            "INSERT INTO ssh_keys (user_id, label, text, algorithm, bits, fingerprint, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (fingerprint) DO NOTHING RETURNING *",
            key.user_id,
            &key.label,
            &key.text,
            key.algorithm.as_str(),
            i64::from(key.bits),
            &key.fingerprint,
            key.created_at.millis(),
            key.expires_at.map(Timestamp::millis)
        ))
        .await?
        .map(SshKeyRow::into_key)
        .transpose()
    }

    /// One page of a user's keys, oldest first, and whether more follow.
    pub async fn list_ssh_keys(&self, user_id: i64, offset: u64, limit: u64) -> StoreResult<(Vec<SshKey>, bool)> {
        let rows = self
            .rows::<SshKeyRow>(sql!(
                "SELECT * FROM ssh_keys WHERE user_id = ?1 ORDER BY id LIMIT ?2 OFFSET ?3",
                user_id,
                page_limit(limit),
                page_offset(offset)
            ))
            .await?;
        let keys = rows.into_iter().map(SshKeyRow::into_key).collect::<StoreResult<Vec<_>>>()?;
        Ok(split_page(keys, limit))
    }

    /// One key by id.
    pub async fn ssh_key(&self, id: i64) -> StoreResult<Option<SshKey>> {
        self.row::<SshKeyRow>(sql!("SELECT * FROM ssh_keys WHERE id = ?1", id))
            .await?
            .map(SshKeyRow::into_key)
            .transpose()
    }

    /// Removes a key; false if there was none.
    pub async fn delete_ssh_key(&self, id: i64) -> StoreResult<bool> {
        Ok(self.one(sql!("DELETE FROM ssh_keys WHERE id = ?1", id)).await?.changes > 0)
    }

    /// The user whose key has this fingerprint, with their own rate-limit settings and the key's
    /// expiry: signing in with an SSH key, in one round trip.
    pub async fn ssh_key_owner(
        &self,
        fingerprint: &str,
    ) -> StoreResult<Option<(User, Option<UserRateLimit>, Option<Timestamp>)>> {
        let Some(r) = self
            .row::<KeyOwnerRow>(sql!(
                "SELECT k.expires_at, u.id, u.name, u.slug, u.display_name, u.email, u.role, u.created_at, \
                 l.capacity AS rl_capacity, l.fill_rate AS rl_fill_rate, l.whitelisted AS rl_whitelisted \
                 FROM ssh_keys k JOIN users u ON u.id = k.user_id \
                 LEFT JOIN rate_limit_users l ON l.user_id = u.id WHERE k.fingerprint = ?1",
                fingerprint
            ))
            .await?
        else {
            return Ok(None);
        };
        let limit = rate_limit(r.rl_capacity, r.rl_fill_rate, r.rl_whitelisted);
        let user = UserRow {
            id: r.id,
            name: r.name,
            slug: r.slug,
            display_name: r.display_name,
            email: r.email,
            role: r.role,
            created_at: r.created_at,
        }
        .into_user()?;
        Ok(Some((user, limit, r.expires_at.map(Timestamp))))
    }
}
