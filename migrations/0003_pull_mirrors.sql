-- mirrorfarm schema, part 3: pull-mirror settings and state. The URL is the repository's
-- upstream_url; a repository with an upstream and no row here is an exact mirror.
CREATE TABLE pull_mirrors (
  repository_id                        INTEGER PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
  enabled                              INTEGER NOT NULL,
  only_mirror_protected_branches       INTEGER NOT NULL,
  mirror_overwrites_diverged_branches  INTEGER NOT NULL,
  mirror_branch_regex                  TEXT,
  mirror_trigger_builds                INTEGER NOT NULL DEFAULT 0,
  update_status                        TEXT NOT NULL DEFAULT 'none',
  last_update_at                       INTEGER,
  last_update_started_at               INTEGER,
  last_successful_update_at            INTEGER,
  last_error                           TEXT,
  updated_at                           INTEGER NOT NULL
);
