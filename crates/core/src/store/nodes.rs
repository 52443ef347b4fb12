//! Farm nodes.

use super::port::{Database, Outcome, row, sql};
use super::{Store, StoreResult, corrupt, split_page};
use crate::nodes::{FarmNode, NewNode};
use crate::time::Timestamp;

pub(super) const NODE_SELECT: &str =
    "SELECT id, name, lookup, hash, created_at, last_seen, clone_url, state FROM farm_nodes";

row! {
    struct NodeRow {
        id: i64,
        name: String,
        lookup: String,
        hash: String,
        created_at: i64,
        last_seen: Option<i64>,
        clone_url: Option<String>,
        state: String,
    }
}

impl From<NodeRow> for FarmNode {
    fn from(r: NodeRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            lookup: r.lookup,
            hash: r.hash,
            created_at: Timestamp(r.created_at),
            last_seen: r.last_seen.map(Timestamp),
            clone_url: r.clone_url,
            state: crate::mesh::MeshNodeState::parse(&r.state).unwrap_or(crate::mesh::MeshNodeState::Offline),
        }
    }
}

pub(super) fn read_nodes(outcome: Outcome) -> StoreResult<Vec<FarmNode>> {
    Ok(outcome.read::<NodeRow>()?.into_iter().map(FarmNode::from).collect())
}

/// Records a node's contact unless it was recorded at or after `unless_since`.
pub(super) fn touch_statement(id: i64, now: Timestamp, unless_since: Timestamp) -> super::port::Statement {
    sql!(
        "UPDATE farm_nodes SET last_seen = ?2 WHERE id = ?1 AND (last_seen IS NULL OR last_seen < ?3)",
        id,
        now.millis(),
        unless_since.millis()
    )
}

impl<D: Database> Store<D> {
    /// Registers a farm node; `Conflict` if the name is taken.
    pub async fn insert_node(&self, node: &NewNode) -> StoreResult<FarmNode> {
        let out = self
            .one(sql!(
                "INSERT INTO farm_nodes (name, lookup, hash, created_at) VALUES (?1, ?2, ?3, ?4) RETURNING *",
                &node.name,
                &node.lookup,
                &node.hash,
                node.created_at.millis()
            ))
            .await?;
        read_nodes(out)?.pop().ok_or_else(|| corrupt("node"))
    }

    /// Nodes whose token lookup key is `lookup`.
    pub async fn nodes_by_lookup(&self, lookup: &str) -> StoreResult<Vec<FarmNode>> {
        read_nodes(self.one(sql!(format!("{NODE_SELECT} WHERE lookup = ?1"), lookup)).await?)
    }

    /// One page of nodes by name, and whether more follow.
    pub async fn list_nodes(&self, offset: u64, limit: u64) -> StoreResult<(Vec<FarmNode>, bool)> {
        let out = self
            .one(sql!(
                format!("{NODE_SELECT} ORDER BY name LIMIT ?1 OFFSET ?2"),
                super::identity::page_limit(limit),
                super::identity::page_offset(offset)
            ))
            .await?;
        Ok(split_page(read_nodes(out)?, limit))
    }

    /// Records contact from a node, unless it was recorded at or after `unless_since`: a node
    /// polling for work is written at most once per interval.
    pub async fn touch_node(&self, id: i64, now: Timestamp, unless_since: Timestamp) -> StoreResult<()> {
        self.one(touch_statement(id, now, unless_since)).await.map(drop)
    }
}
