-- mirrorfarm schema, part 2: farm nodes and job leases.

CREATE TABLE farm_nodes (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  name        TEXT NOT NULL UNIQUE,
  lookup      TEXT NOT NULL,       -- the node token's first characters
  hash        TEXT NOT NULL,       -- SHA-256 of the node token, hex
  created_at  INTEGER NOT NULL,
  last_seen   INTEGER
);
CREATE INDEX farm_nodes_by_lookup ON farm_nodes(lookup);

-- The last lease's id: kept after a reported result so a repeated report is recognised.
ALTER TABLE jobs ADD COLUMN lease_id TEXT;
CREATE INDEX jobs_due ON jobs(state, not_before, enqueued_at, id);
CREATE INDEX jobs_by_lease_deadline ON jobs(state, lease_deadline);
