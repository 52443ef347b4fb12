-- The latest deadline of a node's leases that expired with no word from the node since (it
-- crashed or was cut off mid-job). While it is later than the node's `last_seen`, the node does not
-- keep its copies' pulls and pushes (see the lease query in crates/core/src/store/queue.rs); its
-- next contact restores that.
ALTER TABLE farm_nodes ADD COLUMN lease_lapsed_at INTEGER;
