-- mirrorfarm schema, part 7: instance administration (seed 002): passwords, per-user settings,
-- rate limits and their rejections, repository labels and archiving, and the instance's own
-- settings (banner, default branch, policies, log levels, license, rate-limit defaults).

-- `pbkdf2-sha256$<iterations>$<salt hex>$<derived key hex>`; NULL: the user signs in with tokens only.
ALTER TABLE users ADD COLUMN password_hash TEXT;
-- The content type of the user's avatar in R2 (key `avatars/<user id>`); NULL: the default avatar.
ALTER TABLE users ADD COLUMN avatar_type TEXT;

-- An archived repository is read-only: it is not synced and its mirrors are not pushed.
ALTER TABLE repositories ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;

-- One row per instance setting that differs from its default; `value` is JSON.
CREATE TABLE instance_settings (
  name   TEXT PRIMARY KEY,
  value  TEXT NOT NULL
);

-- A user's own settings (`GET/POST /users/{slug}/settings`): a flat map, `value` JSON.
CREATE TABLE user_settings (
  user_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name     TEXT NOT NULL,
  value    TEXT NOT NULL,
  PRIMARY KEY (user_id, name)
);

-- Per-user rate-limit settings: a bucket of its own, or exempt (`whitelisted`).
CREATE TABLE rate_limit_users (
  user_id      INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
  capacity     INTEGER,
  fill_rate    INTEGER,
  whitelisted  INTEGER NOT NULL DEFAULT 0
);

-- The rate limit's history: how often each user was refused, and when last.
CREATE TABLE rate_limit_rejections (
  user_id         INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
  reject_count    INTEGER NOT NULL,
  last_reject_at  INTEGER NOT NULL
);
CREATE INDEX rate_limit_rejections_by_time ON rate_limit_rejections(last_reject_at);

CREATE TABLE repository_labels (
  repository_id  INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
  name           TEXT NOT NULL,
  PRIMARY KEY (repository_id, name)
);
CREATE INDEX repository_labels_by_name ON repository_labels(name, repository_id);
