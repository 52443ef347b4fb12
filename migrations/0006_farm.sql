-- mirrorfarm schema, part 6: the mirror farm (Bitbucket Smart Mirroring's farm side): upstream
-- servers whose projects the farm mirrors, the projects selected, the farm repositories found on
-- them, and the hashes that prove a copy equals its source.

CREATE TABLE upstream_servers (
  id               TEXT PRIMARY KEY,     -- a UUID, as Bitbucket's upstream ids are
  type             TEXT NOT NULL CHECK (type IN ('bitbucket', 'gitlab', 'gitea')),
  base_url         TEXT NOT NULL,
  api_base_url     TEXT NOT NULL,
  token_sealed     TEXT,                 -- AES-GCM sealed; never returned
  state            TEXT NOT NULL DEFAULT 'INITIALIZING'
                     CHECK (state IN ('INITIALIZING', 'INSTALLED', 'UNKNOWN')),
  state_reason     TEXT,                 -- why the state is UNKNOWN (scrubbed), NULL otherwise
  mode             TEXT NOT NULL DEFAULT 'ALL_PROJECTS' CHECK (mode IN ('ALL_PROJECTS', 'SELECTED_PROJECTS')),
  last_discovery   INTEGER,              -- the last completed listing (epoch ms)
  created_at       INTEGER NOT NULL
);

-- The upstream's project ids (strings, as the upstream names them) mirrored in SELECTED_PROJECTS.
CREATE TABLE upstream_projects (
  upstream_id  TEXT NOT NULL REFERENCES upstream_servers(id) ON DELETE CASCADE,
  project_id   TEXT NOT NULL,
  PRIMARY KEY (upstream_id, project_id)
);

-- A repository the farm holds for an upstream: the repository row carries the upstream's clone
-- URL and credentials like any pull mirror; this row says where it came from and how its syncs went.
CREATE TABLE farm_repositories (
  repository_id        INTEGER PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
  upstream_id          TEXT NOT NULL REFERENCES upstream_servers(id) ON DELETE CASCADE,
  external_repo_id     TEXT NOT NULL,
  external_project_id  TEXT NOT NULL,
  initial_sync         INTEGER,          -- the first successful sync (epoch ms)
  last_sync            INTEGER,          -- the latest successful sync
  failed_sync_count    INTEGER NOT NULL DEFAULT 0,  -- consecutive failures, reset by a success
  last_error           TEXT,             -- why the latest sync failed (scrubbed)
  UNIQUE (upstream_id, external_repo_id)
);

-- What a node found in a repository's copy after its latest sync: SHA-256 of its heads and tags
-- (see README "Hashes"). Any repository with a copy has one, farm or not.
CREATE TABLE repository_hashes (
  repository_id  INTEGER PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
  content        TEXT NOT NULL,
  computed_at    INTEGER NOT NULL
);

-- Which copy each farm node holds: the content hash its latest sync left. A node whose copy's
-- hash is not the repository's latest is behind, and is not offered for clones.
CREATE TABLE node_copies (
  node_id        INTEGER NOT NULL REFERENCES farm_nodes(id) ON DELETE CASCADE,
  repository_id  INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
  content        TEXT NOT NULL,
  synced_at      INTEGER NOT NULL,
  PRIMARY KEY (repository_id, node_id)
);

-- Where a node serves read-only clones of its copies (its heartbeat says), if it does.
ALTER TABLE farm_nodes ADD COLUMN clone_url TEXT;

-- Jobs no longer always concern one repository: a discovery lists an upstream server. The table
-- is rebuilt (SQLite cannot relax NOT NULL in place) with repository_id nullable and upstream_id.
PRAGMA defer_foreign_keys = true;
CREATE TABLE jobs_new (
  id                INTEGER PRIMARY KEY AUTOINCREMENT,
  kind              TEXT NOT NULL,
  repository_id     INTEGER REFERENCES repositories(id) ON DELETE CASCADE,
  remote_mirror_id  INTEGER REFERENCES remote_mirrors(id) ON DELETE CASCADE,
  upstream_id       TEXT REFERENCES upstream_servers(id) ON DELETE CASCADE,
  reason            TEXT NOT NULL,
  state             TEXT NOT NULL DEFAULT 'QUEUED',
  attempt           INTEGER NOT NULL DEFAULT 0,
  enqueued_at       INTEGER NOT NULL,
  not_before        INTEGER,
  lease_owner       INTEGER,
  lease_deadline    INTEGER,
  finished_at       INTEGER,
  lease_id          TEXT,
  priority          INTEGER NOT NULL DEFAULT 0,
  payload           TEXT,
  outcome           TEXT,
  message           TEXT,
  CHECK ((repository_id IS NULL) != (upstream_id IS NULL))
);
INSERT INTO jobs_new (id, kind, repository_id, remote_mirror_id, reason, state, attempt, enqueued_at, not_before,
                      lease_owner, lease_deadline, finished_at, lease_id, priority, payload, outcome, message)
  SELECT id, kind, repository_id, remote_mirror_id, reason, state, attempt, enqueued_at, not_before,
         lease_owner, lease_deadline, finished_at, lease_id, priority, payload, outcome, message FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;

CREATE UNIQUE INDEX jobs_one_waiting_per_target
  ON jobs(kind, IFNULL(repository_id, 0), IFNULL(remote_mirror_id, 0), IFNULL(upstream_id, ''), IFNULL(payload, ''))
  WHERE state = 'QUEUED';
CREATE INDEX jobs_by_repository ON jobs(repository_id, id);
CREATE INDEX jobs_by_upstream ON jobs(upstream_id, id);
CREATE INDEX jobs_due ON jobs(state, not_before, enqueued_at, id);
CREATE INDEX jobs_by_lease_deadline ON jobs(state, lease_deadline);
CREATE INDEX jobs_due_by_priority ON jobs(state, priority DESC, enqueued_at, id);
