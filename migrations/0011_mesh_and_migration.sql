-- mirrorfarm schema, part 11: seed 002's Mesh (farm nodes seen as Mesh nodes) and migration jobs
-- (export, import and Mesh migration).
--
-- Jobs gain a pinned node: a job with `node_id` is leased by that node only (a support zip is
-- built by the node it describes; a Mesh move runs on its target node). Migration jobs name no
-- repository or upstream server, so the CHECK is relaxed for them; the table is rebuilt (SQLite
-- cannot alter a CHECK in place).
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
  node_id           INTEGER REFERENCES farm_nodes(id) ON DELETE CASCADE,
  -- Mail, migration and support-zip jobs name no repository or upstream (their payload says what
  -- they are about); every other job names exactly one of the two.
  CHECK (kind IN ('SEND_MAIL', 'MIGRATION_EXPORT', 'MIGRATION_IMPORT', 'SUPPORT_ZIP')
         OR (repository_id IS NULL) != (upstream_id IS NULL))
);
INSERT INTO jobs_new (id, kind, repository_id, remote_mirror_id, upstream_id, reason, state, attempt, enqueued_at,
                      not_before, lease_owner, lease_deadline, finished_at, lease_id, priority, payload, outcome, message)
  SELECT id, kind, repository_id, remote_mirror_id, upstream_id, reason, state, attempt, enqueued_at,
         not_before, lease_owner, lease_deadline, finished_at, lease_id, priority, payload, outcome, message FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;

CREATE UNIQUE INDEX jobs_one_waiting_per_target
  ON jobs(kind, IFNULL(repository_id, 0), IFNULL(remote_mirror_id, 0), IFNULL(upstream_id, ''), IFNULL(payload, ''),
          IFNULL(node_id, 0))
  WHERE state = 'QUEUED';
CREATE INDEX jobs_by_repository ON jobs(repository_id, id);
CREATE INDEX jobs_by_upstream ON jobs(upstream_id, id);
CREATE INDEX jobs_due ON jobs(state, not_before, enqueued_at, id);
CREATE INDEX jobs_by_lease_deadline ON jobs(state, lease_deadline);
CREATE INDEX jobs_due_by_priority ON jobs(state, priority DESC, enqueued_at, id);

-- A node's Mesh state: AVAILABLE leases work; DRAINING leases only jobs pinned to it while its
-- copies move to other nodes; OFFLINE and DISABLED lease nothing.
ALTER TABLE farm_nodes ADD COLUMN state TEXT NOT NULL DEFAULT 'AVAILABLE'
  CHECK (state IN ('AVAILABLE', 'DRAINING', 'OFFLINE', 'DISABLED'));

-- Round trips a node measured (to the edge: peer_id NULL; to another node's clone server), for
-- `admin/git/mesh/diagnostics/connectivity`. A node reports them with its heartbeat.
CREATE TABLE node_links (
  node_id      INTEGER NOT NULL REFERENCES farm_nodes(id) ON DELETE CASCADE,
  peer_id      INTEGER NOT NULL DEFAULT 0,   -- 0: the edge
  reachable    INTEGER NOT NULL,
  rtt_ms       INTEGER,
  error        TEXT,
  measured_at  INTEGER NOT NULL,
  PRIMARY KEY (node_id, peer_id)
);

-- Copies a node no longer serves (moved to another node by a Mesh migration or a drain): the
-- node deletes them when it next checks which copies are wanted, and the row goes with it.
CREATE TABLE moved_copies (
  node_id        INTEGER NOT NULL REFERENCES farm_nodes(id) ON DELETE CASCADE,
  repository_id  INTEGER NOT NULL,
  PRIMARY KEY (node_id, repository_id)
);

-- Support zips nodes built and uploaded to R2 (`support-zips/<id>.zip`).
CREATE TABLE support_zips (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  node_id     INTEGER NOT NULL REFERENCES farm_nodes(id) ON DELETE CASCADE,
  state       TEXT NOT NULL DEFAULT 'QUEUED' CHECK (state IN ('QUEUED', 'READY', 'FAILED')),
  size        INTEGER,
  sha256      TEXT,
  created_at  INTEGER NOT NULL,
  ready_at    INTEGER
);

-- Migration jobs (seed 002): exports, imports and Mesh migrations, with the seed's job shape.
CREATE TABLE migration_jobs (
  id                INTEGER PRIMARY KEY AUTOINCREMENT,
  type              TEXT NOT NULL CHECK (type IN ('EXPORT', 'IMPORT', 'MESH')),
  state             TEXT NOT NULL DEFAULT 'INITIALISING'
                      CHECK (state IN ('INITIALISING', 'READY', 'RUNNING', 'FINALISING', 'COMPLETED', 'FAILED',
                                       'CANCELING', 'CANCELED', 'TIMED_OUT', 'ABORTED')),
  progress          INTEGER NOT NULL DEFAULT 0,   -- percent
  progress_message  TEXT,
  node_id           INTEGER,                      -- the farm node working on it, once leased
  initiator_id      INTEGER REFERENCES users(id) ON DELETE SET NULL,
  request           TEXT NOT NULL DEFAULT '{}',   -- the request as accepted (JSON)
  archive_path      TEXT,                         -- the archive's R2 key (exports write it, imports read it)
  max_bandwidth     INTEGER,                      -- Mesh migration's maxBytesPerSecond
  started_at        INTEGER NOT NULL,
  updated_at        INTEGER NOT NULL,
  ended_at          INTEGER
);
CREATE INDEX migration_jobs_by_type ON migration_jobs(type, id);

CREATE TABLE migration_messages (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id      INTEGER NOT NULL REFERENCES migration_jobs(id) ON DELETE CASCADE,
  severity    TEXT NOT NULL CHECK (severity IN ('INFO', 'WARN', 'ERROR')),
  subject     TEXT NOT NULL,
  text        TEXT NOT NULL,
  created_at  INTEGER NOT NULL
);
CREATE INDEX migration_messages_by_job ON migration_messages(job_id, severity, id);

-- The repositories of a Mesh migration and where each stands (seed 002's MeshMigrationQueueState).
CREATE TABLE mesh_migration_repos (
  job_id          INTEGER NOT NULL REFERENCES migration_jobs(id) ON DELETE CASCADE,
  repository_id   INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
  state           TEXT NOT NULL DEFAULT 'QUEUED'
                    CHECK (state IN ('QUEUED', 'STAGING', 'STAGED', 'MIGRATED', 'FAILED', 'CANCELED', 'SKIPPED')),
  source_node_id  INTEGER,
  target_node_id  INTEGER,
  PRIMARY KEY (job_id, repository_id)
);
