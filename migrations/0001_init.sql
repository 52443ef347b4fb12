-- mirrorfarm schema, part 1: identity, registry, remote mirrors and the job queue.
-- Times are epoch milliseconds; booleans are 0/1. Secrets are never stored in the clear:
-- tokens as SHA-256 hashes, URL credentials sealed (AES-GCM) by the Worker.

CREATE TABLE users (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  name          TEXT NOT NULL UNIQUE COLLATE NOCASE,
  slug          TEXT NOT NULL UNIQUE COLLATE NOCASE,
  display_name  TEXT NOT NULL,
  email         TEXT,
  role          TEXT NOT NULL DEFAULT 'LICENSED_USER' CHECK (role IN ('LICENSED_USER', 'ADMIN', 'SYS_ADMIN')),
  created_at    INTEGER NOT NULL
);

CREATE TABLE access_tokens (
  id           TEXT PRIMARY KEY,
  user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name         TEXT NOT NULL,
  lookup       TEXT NOT NULL,              -- the token's first characters: a non-secret index key
  hash         TEXT NOT NULL,              -- SHA-256 of the whole token, hex
  permissions  TEXT,                       -- JSON array of permission names; NULL = the user's full rights
  created_at   INTEGER NOT NULL,
  expires_at   INTEGER
);
CREATE INDEX access_tokens_by_lookup ON access_tokens(lookup);
CREATE INDEX access_tokens_by_user ON access_tokens(user_id);

CREATE TABLE projects (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  key          TEXT NOT NULL UNIQUE COLLATE NOCASE,
  name         TEXT NOT NULL UNIQUE COLLATE NOCASE,
  description  TEXT,
  public       INTEGER NOT NULL DEFAULT 0,
  created_at   INTEGER NOT NULL
);

CREATE TABLE repositories (
  id                        INTEGER PRIMARY KEY AUTOINCREMENT,
  project_id                INTEGER NOT NULL REFERENCES projects(id) ON DELETE RESTRICT,
  slug                      TEXT NOT NULL,
  name                      TEXT NOT NULL,
  description               TEXT,
  default_branch            TEXT NOT NULL,
  public                    INTEGER NOT NULL DEFAULT 0,
  forkable                  INTEGER NOT NULL DEFAULT 1,
  upstream_url              TEXT,          -- without credentials
  upstream_url_masked       TEXT,
  upstream_userinfo_sealed  TEXT,
  origin_id                 INTEGER REFERENCES repositories(id) ON DELETE SET NULL,
  hierarchy_id              TEXT NOT NULL,
  created_at                INTEGER NOT NULL,
  UNIQUE (project_id, slug)
);

CREATE TABLE project_grants (
  project_id  INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
  user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  level       TEXT NOT NULL CHECK (level IN ('READ', 'WRITE', 'ADMIN')),
  PRIMARY KEY (project_id, user_id)
);

CREATE TABLE repository_grants (
  repository_id  INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
  user_id        INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  level          TEXT NOT NULL CHECK (level IN ('READ', 'WRITE', 'ADMIN')),
  PRIMARY KEY (repository_id, user_id)
);

CREATE TABLE remote_mirrors (
  id                         INTEGER PRIMARY KEY AUTOINCREMENT,
  repository_id              INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
  url                        TEXT NOT NULL,   -- without credentials
  url_masked                 TEXT NOT NULL,
  userinfo_sealed            TEXT,
  enabled                    INTEGER NOT NULL,
  only_protected_branches    INTEGER NOT NULL,
  keep_divergent_refs        INTEGER NOT NULL,
  mirror_branch_regex        TEXT,
  auth_method                TEXT NOT NULL DEFAULT 'password',
  update_status              TEXT NOT NULL DEFAULT 'none',
  last_update_at             INTEGER,
  last_update_started_at     INTEGER,
  last_successful_update_at  INTEGER,
  last_error                 TEXT,
  created_at                 INTEGER NOT NULL,
  updated_at                 INTEGER NOT NULL
);
CREATE INDEX remote_mirrors_by_repository ON remote_mirrors(repository_id, id);

CREATE TABLE jobs (
  id                INTEGER PRIMARY KEY AUTOINCREMENT,
  kind              TEXT NOT NULL,
  repository_id     INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
  remote_mirror_id  INTEGER REFERENCES remote_mirrors(id) ON DELETE CASCADE,
  reason            TEXT NOT NULL,
  state             TEXT NOT NULL DEFAULT 'QUEUED',
  attempt           INTEGER NOT NULL DEFAULT 0,
  enqueued_at       INTEGER NOT NULL,
  not_before        INTEGER,
  lease_owner       INTEGER,           -- the farm node holding the lease
  lease_deadline    INTEGER,
  finished_at       INTEGER
);
-- At most one waiting job per target: asking again while one waits is absorbed by it.
CREATE UNIQUE INDEX jobs_one_waiting_per_target
  ON jobs(kind, repository_id, IFNULL(remote_mirror_id, 0)) WHERE state = 'QUEUED';
CREATE INDEX jobs_by_repository ON jobs(repository_id, id);
