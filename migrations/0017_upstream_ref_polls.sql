-- Polls by refs, one job per upstream: the farm repositories of an upstream that publishes no
-- content hashes (GitLab, Gitea, or a Bitbucket whose listing answered 404) are polled by one
-- UPSTREAM_POLL job. The node lists every repository's refs upstream with its bounded
-- concurrency and reports their fingerprints; only the repositories whose fingerprint moved are
-- pulled. It was one PULL_MIRROR job per repository: a lease and a report each.

-- When a node last listed the refs of all its farm repositories (epoch ms).
ALTER TABLE upstream_servers ADD COLUMN refs_listed_at INTEGER;
