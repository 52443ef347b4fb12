//! Mesh migration (seed 002): moving repositories' copies onto a chosen set of farm nodes.
//!
//! Each selected repository (with its whole fork hierarchy, as the seed says) is planned as one
//! move: from a node that holds its current copy to the target node holding the fewest copies. A
//! move is a queue job pinned to its target: the target fetches the copy from the source node's
//! clone server with a fetch grant ([`super::grant`]), checks that its content hash equals the
//! source's, and reports; only then does the edge switch the repository's copy to the target and
//! tell the source to drop its own. Until then the source's copy keeps serving, so a target that
//! dies mid-move loses nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// `POST migration/mesh[/preview]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MeshMigrationRequest {
    /// Repositories to move.
    #[serde(default)]
    pub repository_ids: Vec<i64>,
    /// Projects whose repositories to move.
    #[serde(default)]
    pub project_ids: Vec<i64>,
    /// Everything (as both lists empty).
    #[serde(default)]
    pub all: Option<bool>,
    /// Bandwidth cap per move (`{"asLong": n, "present": true}` or a number); kept and shown.
    #[serde(default)]
    pub max_bytes_per_second: Option<serde_json::Value>,
    /// The nodes to move copies onto (mirrorfarm's addition; default: every available node).
    #[serde(default)]
    pub node_ids: Vec<serde_json::Value>,
}

impl MeshMigrationRequest {
    /// The bandwidth cap, in either of the shapes clients send.
    pub fn max_bandwidth(&self) -> Option<i64> {
        match &self.max_bytes_per_second {
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::Object(o))
                if o.get("present").and_then(serde_json::Value::as_bool) != Some(false) =>
            {
                o.get("asLong").and_then(serde_json::Value::as_i64)
            }
            _ => None,
        }
        .filter(|n| *n > 0)
    }

    /// The target node ids (numbers or numeric strings); `Err` names one that is neither.
    pub fn targets(&self) -> Result<Vec<i64>, String> {
        self.node_ids
            .iter()
            .map(|v| match v {
                serde_json::Value::Number(n) => n.as_i64().ok_or_else(|| n.to_string()),
                serde_json::Value::String(s) => s.trim().parse().map_err(|_| s.clone()),
                other => Err(other.to_string()),
            })
            .collect()
    }

    /// Whether it selects every repository.
    pub fn selects_all(&self) -> bool {
        self.all == Some(true) || (self.repository_ids.is_empty() && self.project_ids.is_empty())
    }
}

/// A repository a migration may select: its id, project and fork hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Repository id.
    pub id: i64,
    /// Its project's id.
    pub project_id: i64,
    /// Its fork hierarchy (shared by an origin and all its forks).
    pub hierarchy: String,
}

/// The repositories a request selects, each once, with every fork hierarchy they touch whole.
pub fn select(request: &MeshMigrationRequest, candidates: &[Candidate]) -> Vec<i64> {
    if request.selects_all() {
        return candidates.iter().map(|c| c.id).collect::<BTreeSet<_>>().into_iter().collect();
    }
    let hierarchies: BTreeSet<&str> = candidates
        .iter()
        .filter(|c| request.repository_ids.contains(&c.id) || request.project_ids.contains(&c.project_id))
        .map(|c| c.hierarchy.as_str())
        .collect();
    candidates
        .iter()
        .filter(|c| hierarchies.contains(c.hierarchy.as_str()))
        .map(|c| c.id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Where a repository's current copies are (node ids, live ones only).
pub type Placement = BTreeMap<i64, Vec<i64>>;

/// What becomes of one selected repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    /// Fetch the copy from `source` onto `target`.
    Queued {
        /// Repository.
        repository_id: i64,
        /// A node with its current copy.
        source: i64,
        /// The node it moves to.
        target: i64,
    },
    /// Nothing to move, saying why.
    Skipped {
        /// Repository.
        repository_id: i64,
        /// Why.
        why: String,
    },
}

/// Plans the moves of `selected` onto `targets`: a repository already on a target is skipped, as
/// is one that no live node holds current; the others go from their first holder to the target
/// with the fewest copies (counting those already planned), so the targets fill evenly.
pub fn plan(selected: &[i64], placement: &Placement, targets: &[i64], held: &BTreeMap<i64, usize>) -> Vec<Move> {
    let mut load: BTreeMap<i64, usize> = targets.iter().map(|t| (*t, held.get(t).copied().unwrap_or(0))).collect();
    selected
        .iter()
        .map(|&repository_id| {
            let holders = placement.get(&repository_id).map(Vec::as_slice).unwrap_or_default();
            if let Some(on) = holders.iter().find(|h| targets.contains(h)) {
                return Move::Skipped { repository_id, why: format!("Already on node {on}.") };
            }
            let Some(&source) = holders.first() else {
                return Move::Skipped { repository_id, why: "No live node holds a current copy to move.".into() };
            };
            let Some((&target, _)) = load.iter().min_by_key(|(id, n)| (**n, **id)) else {
                return Move::Skipped { repository_id, why: "No target node.".into() };
            };
            *load.entry(target).or_default() += 1;
            Move::Queued { repository_id, source, target }
        })
        .collect()
}

/// A repository's place in a Mesh migration (seed 002's `MeshMigrationQueueState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QueueState {
    /// Waiting for its target node.
    Queued,
    /// Its target node is fetching it.
    Staging,
    /// Fetched and checked (a moment before it is switched).
    Staged,
    /// Its copy now lives on the target.
    Migrated,
    /// The move failed; the source's copy still serves.
    Failed,
    /// Cancelled before it moved.
    Canceled,
    /// Nothing to move.
    Skipped,
}

crate::wire_names!(QueueState { Queued = "QUEUED", Staging = "STAGING", Staged = "STAGED", Migrated = "MIGRATED", Failed = "FAILED", Canceled = "CANCELED", Skipped = "SKIPPED" });

/// `GET migration/mesh/summary`, `…/summaries`, `…/{jobId}/summary`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MeshMigrationSummary {
    /// The migration job.
    pub job_id: i64,
    /// Its state.
    pub state: String,
    /// Percent of its repositories done.
    pub progress: i64,
    /// Started (epoch ms).
    pub start_time: i64,
    /// Ended (epoch ms), once it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    /// The bandwidth cap asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bandwidth: Option<i64>,
    /// How many repositories are in each state.
    pub queue: BTreeMap<String, i64>,
}

/// The Mesh-move part of a leased job: where to fetch the copy and what it must hash to.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LeasedMove {
    /// The migration it belongs to.
    pub migration_id: i64,
    /// The source node.
    pub source_node_id: i64,
    /// The repository's clone URL on the source node.
    pub source_url: String,
    /// The fetch grant to show the source (`Authorization: Bearer …`); a secret.
    pub grant: String,
    /// The content hash of the source's copy: the fetched copy must equal it.
    pub expected_content: String,
    /// Bandwidth cap (bytes/s), if one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes_per_second: Option<i64>,
}

impl std::fmt::Debug for LeasedMove {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeasedMove")
            .field("migration_id", &self.migration_id)
            .field("source_node_id", &self.source_node_id)
            .field("source_url", &self.source_url)
            .field("grant", &"<redacted>")
            .field("expected_content", &self.expected_content)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: i64, project_id: i64, hierarchy: &str) -> Candidate {
        Candidate { id, project_id, hierarchy: hierarchy.into() }
    }

    #[test]
    fn selection_takes_whole_fork_hierarchies_once() {
        let all = [c(1, 10, "h1"), c(2, 10, "h2"), c(3, 20, "h1"), c(4, 20, "h4")];
        let pick = |repository_ids: Vec<i64>, project_ids: Vec<i64>| {
            select(&MeshMigrationRequest { repository_ids, project_ids, ..Default::default() }, &all)
        };
        // A fork (3) brings its origin (1), and the origin its forks.
        assert_eq!(pick(vec![3], vec![]), vec![1, 3]);
        assert_eq!(pick(vec![1, 3, 1], vec![]), vec![1, 3]);
        assert_eq!(pick(vec![], vec![10]), vec![1, 2, 3]);
        assert_eq!(pick(vec![], vec![]), vec![1, 2, 3, 4]);
        let everything = MeshMigrationRequest { repository_ids: vec![4], all: Some(true), ..Default::default() };
        assert_eq!(select(&everything, &all), vec![1, 2, 3, 4]);
    }

    #[test]
    fn moves_fill_targets_evenly_and_skip_what_needs_no_move() {
        let placement: Placement = [(1, vec![7]), (2, vec![7]), (3, vec![7]), (4, vec![8]), (5, vec![])].into();
        let held = [(8, 1usize)].into();
        let moves = plan(&[1, 2, 3, 4, 5, 6], &placement, &[8, 9], &held);
        let queued: Vec<(i64, i64)> = moves
            .iter()
            .filter_map(|m| match m {
                Move::Queued { repository_id, target, .. } => Some((*repository_id, *target)),
                Move::Skipped { .. } => None,
            })
            .collect();
        // 9 starts empty, 8 holds one: 9, then 8 and 9 alternate.
        assert_eq!(queued, vec![(1, 9), (2, 8), (3, 9)]);
        assert!(matches!(&moves[3], Move::Skipped { why, .. } if why.contains("node 8")));
        assert!(matches!(&moves[4], Move::Skipped { why, .. } if why.contains("No live node")));
        assert!(matches!(&moves[5], Move::Skipped { .. }));
    }

    #[test]
    fn bandwidth_reads_both_shapes() {
        let with = |v: serde_json::Value| MeshMigrationRequest { max_bytes_per_second: Some(v), ..Default::default() };
        assert_eq!(with(serde_json::json!({"asLong": 2154, "present": true})).max_bandwidth(), Some(2154));
        assert_eq!(with(serde_json::json!({"asLong": 2154, "present": false})).max_bandwidth(), None);
        assert_eq!(with(serde_json::json!(10)).max_bandwidth(), Some(10));
        let targets =
            MeshMigrationRequest { node_ids: vec![serde_json::json!(1), serde_json::json!("2")], ..Default::default() };
        assert_eq!(targets.targets(), Ok(vec![1, 2]));
    }
}
