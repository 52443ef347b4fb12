-- mirrorfarm schema, part 9: the audit log (seed 002). One row per write through the API and per
-- failed sign-in, written in the same D1 batch as the change it records (see store/audit.rs).
-- (0008 is another change's.)

CREATE TABLE audit_events (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  at           INTEGER NOT NULL,             -- epoch ms
  author_id    INTEGER,                      -- the user's id; NULL: anonymous or a farm node
  author_name  TEXT NOT NULL,
  author_slug  TEXT,
  author_type  TEXT NOT NULL,                -- user | anonymous | system
  source       TEXT,                         -- the client's address
  category     TEXT NOT NULL,
  action       TEXT NOT NULL,
  method       TEXT NOT NULL,                -- the HTTP method
  path         TEXT NOT NULL,                -- the request path (no query)
  status       INTEGER,                      -- the HTTP status; NULL when written with the change
  outcome      TEXT NOT NULL,                -- SUCCESS | FAILURE
  objects      TEXT NOT NULL,                -- JSON [{type, id}]
  object_keys  TEXT NOT NULL,                -- '|TYPE,ID|' per object, for filtering
  changed      TEXT NOT NULL                 -- JSON [{key, to}], secrets masked
);
CREATE INDEX audit_events_by_time ON audit_events(at, id);
CREATE INDEX audit_events_by_action ON audit_events(action, at);
CREATE INDEX audit_events_by_category ON audit_events(category, at);
CREATE INDEX audit_events_by_author ON audit_events(author_id, at);
