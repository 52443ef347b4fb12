//! Farm nodes.

use super::port::{Database, Outcome, row, sql};
use super::{Store, StoreResult, corrupt, split_page};
use crate::nodes::{FarmNode, NewNode};
use crate::time::Timestamp;

pub(super) const NODE_SELECT: &str = "SELECT id, name, lookup, hash, created_at, last_seen, clone_url FROM farm_nodes";

row! {
    struct NodeRow {
        id: i64,
        name: String,
        lookup: String,
        hash: String,
        created_at: i64,
        last_seen: Option<i64>,
        clone_url: Option<String>,
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

    /// Which of `ids` name no repository (any more).
    pub async fn missing_repositories(&self, ids: &[i64]) -> StoreResult<Vec<i64>> {
        row! {
            struct Missing {
                id: i64,
            }
        }
        let list = serde_json::Value::from(ids.to_vec()).to_string();
        let rows = self
            .rows::<Missing>(sql!(
                "SELECT DISTINCT j.value AS id FROM json_each(?1) j \
                 WHERE NOT EXISTS (SELECT 1 FROM repositories r WHERE r.id = j.value) ORDER BY 1",
                list.as_str()
            ))
            .await?;
        Ok(rows.into_iter().map(|m| m.id).collect())
    }

    /// A heartbeat: the node's contact, and where it serves clones (if it does), in one statement.
    pub async fn heartbeat(&self, id: i64, now: Timestamp, clone_url: Option<&str>) -> StoreResult<()> {
        self.one(sql!(
            "UPDATE farm_nodes SET last_seen = ?2, clone_url = ?3 WHERE id = ?1",
            id,
            now.millis(),
            clone_url
        ))
        .await
        .map(drop)
    }
}
