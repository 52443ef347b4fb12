-- mirrorfarm schema, part 13: SSH. Users' public keys (Bitbucket's /rest/ssh/1.0/keys and GitLab's
-- /api/v4/user/keys are two views of this one table), where farm nodes serve git over SSH, and the
-- key pairs and known hosts of push mirrors that authenticate with an SSH key. (0012 is another change's.)

CREATE TABLE ssh_keys (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  label        TEXT NOT NULL,
  text         TEXT NOT NULL,              -- '<type> <base64> [comment]'
  algorithm    TEXT NOT NULL,              -- ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256/384/521
  bits         INTEGER NOT NULL,
  fingerprint  TEXT NOT NULL UNIQUE,       -- 'SHA256:<base64>': one key belongs to one user
  created_at   INTEGER NOT NULL,
  expires_at   INTEGER
);
CREATE INDEX ssh_keys_by_user ON ssh_keys(user_id, id);

-- Where a node serves read-only git over SSH ('ssh://git@host:port'), as its heartbeat says.
ALTER TABLE farm_nodes ADD COLUMN ssh_url TEXT;

-- Push mirrors with auth_method 'ssh_public_key': the Ed25519 seed (sealed like credentials), its
-- public half as an OpenSSH line, the target's known hosts (given, or learned on the first push)
-- and their SHA-256 fingerprints, one per line, for the mirror's host_keys.
ALTER TABLE remote_mirrors ADD COLUMN ssh_seed_sealed TEXT;
ALTER TABLE remote_mirrors ADD COLUMN ssh_public_key TEXT;
ALTER TABLE remote_mirrors ADD COLUMN ssh_known_hosts TEXT;
ALTER TABLE remote_mirrors ADD COLUMN ssh_host_fingerprints TEXT;
