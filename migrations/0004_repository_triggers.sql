-- mirrorfarm schema, part 4: what starts a repository's syncs besides the API.
CREATE TABLE repository_triggers (
  repository_id          INTEGER PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
  webhook_secret_sealed  TEXT,      -- AES-GCM sealed; HMACs need the secret itself
  upstream_fingerprint   TEXT,      -- SHA-256 of the upstream's ref listing at the last pull
  last_polled_at         INTEGER
);
