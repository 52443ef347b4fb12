-- Polls by content hash: an upstream that publishes its repositories' content hashes
-- (`GET /rest/mirroring/latest/repos`, `properties.contentHash`, as Bitbucket and mirrorfarm do)
-- is polled with one paged listing, and only the repositories whose hash moved are fetched.

-- Whether the upstream publishes them: NULL not known yet (tried), 1 yes, 0 no (its listing
-- answered 404: its repositories are polled one by one, by listing their refs).
ALTER TABLE upstream_servers ADD COLUMN publishes_hashes INTEGER;
-- When a node last listed its content hashes completely (epoch ms).
ALTER TABLE upstream_servers ADD COLUMN hashes_listed_at INTEGER;

-- The upstream's content hash (as it publishes it) that the copy was last synced to, and the one
-- a queued or running pull was asked to reach: a successful pull makes the second the first.
ALTER TABLE farm_repositories ADD COLUMN upstream_content_hash TEXT;
ALTER TABLE farm_repositories ADD COLUMN pending_content_hash TEXT;
