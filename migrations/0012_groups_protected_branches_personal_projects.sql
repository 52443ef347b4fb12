-- mirrorfarm schema, part 12: groups, protected branches and personal projects.

-- Bitbucket's groups: a name and its members. A group's grants count for each member.
CREATE TABLE groups (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  name        TEXT NOT NULL UNIQUE COLLATE NOCASE,
  created_at  INTEGER NOT NULL
);

CREATE TABLE group_members (
  group_id  INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
  user_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_by_user ON group_members(user_id, group_id);

CREATE TABLE project_group_grants (
  project_id  INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
  group_id    INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
  level       TEXT NOT NULL CHECK (level IN ('READ', 'WRITE', 'ADMIN')),
  PRIMARY KEY (project_id, group_id)
);
CREATE INDEX project_group_grants_by_group ON project_group_grants(group_id);

CREATE TABLE repository_group_grants (
  repository_id  INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
  group_id       INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
  level          TEXT NOT NULL CHECK (level IN ('READ', 'WRITE', 'ADMIN')),
  PRIMARY KEY (repository_id, group_id)
);
CREATE INDEX repository_group_grants_by_group ON repository_group_grants(group_id);

-- Personal projects (`~SLUG`): one per user, owned by them. The owner is the project's
-- administrator without a grant row; every other rule is a normal project's.
ALTER TABLE projects ADD COLUMN owner_id INTEGER REFERENCES users(id);
CREATE UNIQUE INDEX projects_one_personal_per_user ON projects(owner_id) WHERE owner_id IS NOT NULL;

INSERT INTO projects (key, name, description, public, created_at, owner_id)
  SELECT '~' || upper(slug), '~' || upper(slug), NULL, 0, created_at, id FROM users;

-- Every user gets theirs when created, whichever path creates them.
CREATE TRIGGER users_personal_project AFTER INSERT ON users
BEGIN
  INSERT INTO projects (key, name, description, public, created_at, owner_id)
    VALUES ('~' || upper(NEW.slug), '~' || upper(NEW.slug), NULL, 0, NEW.created_at, NEW.id);
END;

-- A user's personal repositories and project go with them (their forks elsewhere keep their
-- copies and lose their origin, as when any origin is deleted).
CREATE TRIGGER users_personal_project_removed BEFORE DELETE ON users
BEGIN
  DELETE FROM repositories WHERE project_id IN (SELECT id FROM projects WHERE owner_id = OLD.id);
  DELETE FROM projects WHERE owner_id = OLD.id;
END;

-- What every access check reads: a user's grants from all sources, one row per source (the
-- reader takes the highest). Direct grants, their groups' grants, and personal ownership.
CREATE VIEW effective_project_grants (project_id, user_id, level) AS
  SELECT project_id, user_id, level FROM project_grants
  UNION ALL
  SELECT g.project_id, m.user_id, g.level FROM project_group_grants g JOIN group_members m ON m.group_id = g.group_id
  UNION ALL
  SELECT id, owner_id, 'ADMIN' FROM projects WHERE owner_id IS NOT NULL;

CREATE VIEW effective_repository_grants (repository_id, user_id, level) AS
  SELECT repository_id, user_id, level FROM repository_grants
  UNION ALL
  SELECT g.repository_id, m.user_id, g.level FROM repository_group_grants g JOIN group_members m ON m.group_id = g.group_id;

-- GitLab's protected branches, per repository (a GitLab project): a name or a wildcard
-- pattern (`release/*`). They select what `only_protected_branches` mirrors carry.
CREATE TABLE protected_branches (
  id                            INTEGER PRIMARY KEY AUTOINCREMENT,
  repository_id                 INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
  name                          TEXT NOT NULL,
  push_access_level             INTEGER NOT NULL DEFAULT 40,
  merge_access_level            INTEGER NOT NULL DEFAULT 40,
  unprotect_access_level        INTEGER NOT NULL DEFAULT 40,
  allow_force_push              INTEGER NOT NULL DEFAULT 0,
  code_owner_approval_required  INTEGER NOT NULL DEFAULT 0,
  created_at                    INTEGER NOT NULL,
  UNIQUE (repository_id, name)
);
