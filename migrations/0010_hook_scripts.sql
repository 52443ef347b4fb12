-- mirrorfarm schema, part 10: hook scripts (seed 002). The content lives in R2 under
-- `hook-scripts/<sha256>`; a row says what it is. Attaching one to a project or repository with
-- trigger ids makes farm nodes run it around the ref updates they make there.
CREATE TABLE hook_scripts (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  name          TEXT NOT NULL UNIQUE COLLATE NOCASE,
  description   TEXT,
  type          TEXT NOT NULL CHECK (type IN ('PRE', 'POST')),
  version       INTEGER NOT NULL DEFAULT 1,
  content_hash  TEXT NOT NULL,           -- SHA-256 of the content, hex (its R2 key)
  size          INTEGER NOT NULL,
  created_at    INTEGER NOT NULL,
  updated_at    INTEGER NOT NULL
);

CREATE TABLE hook_script_configs (
  script_id    INTEGER NOT NULL REFERENCES hook_scripts(id) ON DELETE CASCADE,
  scope_type   TEXT NOT NULL CHECK (scope_type IN ('PROJECT', 'REPOSITORY')),
  scope_id     INTEGER NOT NULL,         -- the project's or repository's id
  trigger_ids  TEXT NOT NULL,            -- JSON array of trigger ids
  PRIMARY KEY (scope_type, scope_id, script_id)
);
CREATE INDEX hook_script_configs_by_script ON hook_script_configs(script_id);
