-- mirrorfarm schema, part 8: notification e-mail (seed 002's mail server). Mail is a job kind of
-- the queue (`SEND_MAIL`): leased by a farm node, retried with backoff, its outcome stored. Such a
-- job concerns neither a repository nor an upstream server, so the jobs table is rebuilt with the
-- CHECK relaxed for it (SQLite cannot alter a CHECK in place).
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
  -- A mail names no repository or upstream (its payload says what it is about); every other job
  -- names exactly one of the two.
  CHECK (kind = 'SEND_MAIL' OR (repository_id IS NULL) != (upstream_id IS NULL))
);
INSERT INTO jobs_new (id, kind, repository_id, remote_mirror_id, upstream_id, reason, state, attempt, enqueued_at,
                      not_before, lease_owner, lease_deadline, finished_at, lease_id, priority, payload, outcome, message)
  SELECT id, kind, repository_id, remote_mirror_id, upstream_id, reason, state, attempt, enqueued_at,
         not_before, lease_owner, lease_deadline, finished_at, lease_id, priority, payload, outcome, message FROM jobs;
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

-- What notifications know of each thing they watch (`push:<mirror id>`, `pull:<repository id>`,
-- `fork:<repository id>`, `license`): consecutive failed tries, whether its admins were told it is
-- failing (so recovery is told once too), and when each cause was last mailed (JSON: cause → ms),
-- for the throttle.
CREATE TABLE notification_state (
  target    TEXT PRIMARY KEY,
  failures  INTEGER NOT NULL DEFAULT 0,
  alerted   INTEGER NOT NULL DEFAULT 0,
  sent      TEXT NOT NULL DEFAULT '{}'
);
