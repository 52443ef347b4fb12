-- mirrorfarm schema, part 5: forks kept in step with their origin (Bitbucket's ref sync), and
-- jobs that a request waits for.

-- A fork's own git location (where sync reads and writes its refs) and its sync settings and
-- outcome. The fork is the repository row whose origin_id names its origin.
CREATE TABLE fork_syncs (
  repository_id    INTEGER PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
  origin_name      TEXT NOT NULL,     -- "KEY/slug" of the origin when forked: says which origin is gone
  url              TEXT NOT NULL,     -- without credentials
  url_masked       TEXT NOT NULL,
  userinfo_sealed  TEXT,
  enabled          INTEGER NOT NULL DEFAULT 0,
  last_sync        INTEGER,           -- the last completed sync (epoch ms)
  last_error       TEXT,              -- why the last sync failed (scrubbed), NULL after a success
  updated_at       INTEGER NOT NULL
);

-- The refs of a fork that the last sync could not bring in step: replaced by every sync.
CREATE TABLE fork_ref_states (
  repository_id  INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
  ref_name       TEXT NOT NULL,
  state          TEXT NOT NULL CHECK (state IN ('AHEAD', 'DIVERGED', 'ORPHANED')),
  PRIMARY KEY (repository_id, ref_name)
);

CREATE INDEX repositories_by_origin ON repositories(origin_id);

-- Work a request waits for (a fork sync it asked for, a MERGE or DISCARD) goes ahead of routine work.
ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
-- What the job is to do beyond its kind (JSON: a fork action); part of its identity in the queue.
ALTER TABLE jobs ADD COLUMN payload TEXT;
-- How the node said the job ended, and its message: read by the request that waits for it.
ALTER TABLE jobs ADD COLUMN outcome TEXT;
ALTER TABLE jobs ADD COLUMN message TEXT;

DROP INDEX jobs_one_waiting_per_target;
CREATE UNIQUE INDEX jobs_one_waiting_per_target
  ON jobs(kind, repository_id, IFNULL(remote_mirror_id, 0), IFNULL(payload, '')) WHERE state = 'QUEUED';
CREATE INDEX jobs_due_by_priority ON jobs(state, priority DESC, enqueued_at, id);
