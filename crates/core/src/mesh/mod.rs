//! Mesh (seed 002): the farm's nodes seen as Bitbucket Mesh nodes. An administrator lists and
//! registers them, renames them and sets their state (a draining node hands its copies to the
//! others; an offline one leases nothing), reads how well they reach the edge and each other,
//! downloads a support zip each node builds, and moves repository copies between them (Mesh
//! migration, [`migration`]). What the edge signs for nodes (the grants one node shows another to
//! fetch a copy, and its clone-access answers) is checked with the control plane's public key
//! ([`grant`]).

pub mod grant;
pub mod migration;
pub mod zip;

use serde::{Deserialize, Serialize};

use crate::nodes::{FarmNode, LIVE_WINDOW_MS};
use crate::time::Timestamp;

/// A node's Mesh state, as Bitbucket names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MeshNodeState {
    /// Leases work and serves clones.
    Available,
    /// Leases only work pinned to it while its copies move to other nodes; still serves clones.
    Draining,
    /// Leases nothing (it may still serve the clones it holds).
    Offline,
    /// Leases nothing; kept registered.
    Disabled,
}

crate::wire_names!(MeshNodeState { Available = "AVAILABLE", Draining = "DRAINING", Offline = "OFFLINE", Disabled = "DISABLED" });

impl MeshNodeState {
    /// Reads a state as a request names it: Bitbucket's names, and `ACTIVE` for `AVAILABLE`.
    pub fn parse_request(text: &str) -> Option<Self> {
        match text.trim().to_ascii_uppercase().as_str() {
            "ACTIVE" => Some(Self::Available),
            other => Self::parse(other),
        }
    }
}

/// Whether `node` counts as live at `now`: seen within [`LIVE_WINDOW_MS`].
pub fn is_live(node: &FarmNode, now: Timestamp) -> bool {
    node.last_seen.is_some_and(|seen| now.millis() - seen.millis() <= LIVE_WINDOW_MS)
}

/// A node as `admin/git/mesh/nodes` shows it (Bitbucket's `RestMeshNode`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MeshNode {
    /// Id (a number, as a string, as Bitbucket's are).
    pub id: String,
    /// Name.
    pub name: String,
    /// The id nodes know each other by (the same id).
    pub rpc_id: String,
    /// Where the node serves clones and answers other nodes, once its heartbeat said so.
    pub rpc_url: Option<String>,
    /// Its state.
    pub state: MeshNodeState,
    /// Whether it is out of reach: `OFFLINE`, or not seen within the live window.
    pub offline: bool,
    /// Last contact (epoch ms), if any.
    pub last_seen_date: Option<i64>,
}

impl MeshNode {
    /// The node as seen at `now`.
    pub fn of(node: &FarmNode, now: Timestamp) -> Self {
        Self {
            id: node.id.to_string(),
            name: node.name.clone(),
            rpc_id: node.id.to_string(),
            rpc_url: node.clone_url.clone(),
            state: node.state,
            offline: node.state == MeshNodeState::Offline || !is_live(node, now),
            last_seen_date: node.last_seen.map(Timestamp::millis),
        }
    }
}

/// `POST`/`PUT admin/git/mesh/nodes[/{id}]`: Bitbucket's node shape; every field optional (a
/// registration needs `name`). `id`, `rpcId`, `offline` and `lastSeenDate` are the edge's to set
/// and are ignored, as is `rpcUrl`: a node's heartbeat says where it serves.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MeshNodeInput {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// State: `AVAILABLE` (or `ACTIVE`), `DRAINING`, `OFFLINE`, `DISABLED`.
    #[serde(default)]
    pub state: Option<String>,
    /// Ignored (the node's heartbeat says it).
    #[serde(default)]
    pub rpc_url: Option<String>,
    /// Ignored.
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    /// Ignored.
    #[serde(default)]
    pub rpc_id: Option<serde_json::Value>,
    /// Ignored.
    #[serde(default)]
    pub offline: Option<serde_json::Value>,
    /// Ignored.
    #[serde(default)]
    pub last_seen_date: Option<serde_json::Value>,
}

/// A node just registered through Mesh: the node, and its token, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RegisteredMeshNode {
    /// The node.
    #[serde(flatten)]
    pub node: MeshNode,
    /// The token the node signs in with (`mirrorfarm-runner --token`); never shown again.
    pub token: String,
}

/// What a node measured of one link, reported with its heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LinkProbe {
    /// The other node's id; none for the edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<i64>,
    /// Whether it answered.
    pub reachable: bool,
    /// Its round trip (ms), when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_trip_ms: Option<i64>,
    /// Why it did not answer (scrubbed by the edge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Most links one heartbeat may report (the edge and this many peers).
pub const MAX_LINKS: usize = 64;

/// A peer a node is to probe: another node that serves clones.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    /// Its id.
    pub id: i64,
    /// Its clone server.
    pub clone_url: String,
}

/// A stored link measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The node that measured.
    pub node_id: i64,
    /// The other end (0: the edge).
    pub peer_id: i64,
    /// Whether it answered.
    pub reachable: bool,
    /// Round trip (ms).
    pub round_trip_ms: Option<i64>,
    /// Why not.
    pub error: Option<String>,
}

/// One end of a link in the connectivity report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReportNode {
    /// Id (`edge` for the control plane).
    pub id: String,
    /// Name.
    pub name: String,
    /// `BITBUCKET` (the edge) or `MESH` (a farm node).
    #[serde(rename = "type")]
    pub kind: String,
    /// A node's last contact (epoch ms), if any (mirrorfarm's addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_date: Option<i64>,
}

/// What one link measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LinkSummary {
    /// Whether it answered.
    pub reachable: bool,
    /// Round trip (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round_trip_time: Option<i64>,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// A link as the report shows it: the other end and what was measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LinkReport {
    /// The other end.
    pub node: ReportNode,
    /// What was measured.
    pub summary: LinkSummary,
}

/// One node's links.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    /// The node.
    pub node: ReportNode,
    /// Its links.
    pub summaries: Vec<LinkReport>,
}

/// `GET admin/git/mesh/diagnostics/connectivity`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConnectivityReport {
    /// The edge's report first (what each node measured of it), then each node's.
    pub reports: Vec<NodeReport>,
}

fn edge_end() -> ReportNode {
    ReportNode { id: "edge".into(), name: "mirrorfarm edge".into(), kind: "BITBUCKET".into(), last_seen_date: None }
}

fn node_end(node: &FarmNode) -> ReportNode {
    ReportNode {
        id: node.id.to_string(),
        name: node.name.clone(),
        kind: "MESH".into(),
        last_seen_date: node.last_seen.map(Timestamp::millis),
    }
}

fn summary(link: Option<&Link>) -> LinkSummary {
    match link {
        Some(l) => {
            LinkSummary { reachable: l.reachable, round_trip_time: l.round_trip_ms, error_message: l.error.clone() }
        }
        None => LinkSummary {
            reachable: false,
            round_trip_time: None,
            error_message: Some("Not measured yet: the node has not reported this link.".into()),
        },
    }
}

/// The connectivity report from the nodes and what they measured: the edge's row lists each
/// node's measured trip to the edge; each node's row lists the edge and every other node that
/// serves clones. A link nobody measured is unreachable, saying so.
pub fn connectivity(nodes: &[FarmNode], links: &[Link]) -> ConnectivityReport {
    let find = |node: i64, peer: i64| links.iter().find(|l| l.node_id == node && l.peer_id == peer);
    let mut reports = vec![NodeReport {
        node: edge_end(),
        summaries: nodes.iter().map(|n| LinkReport { node: node_end(n), summary: summary(find(n.id, 0)) }).collect(),
    }];
    for node in nodes {
        let mut summaries = vec![LinkReport { node: edge_end(), summary: summary(find(node.id, 0)) }];
        for peer in nodes.iter().filter(|p| p.id != node.id && p.clone_url.is_some()) {
            summaries.push(LinkReport { node: node_end(peer), summary: summary(find(node.id, peer.id)) });
        }
        reports.push(NodeReport { node: node_end(node), summaries });
    }
    ConnectivityReport { reports }
}

/// The R2 key of a support zip.
pub fn support_zip_key(id: i64) -> String {
    format!("support-zips/{id}.zip")
}

/// A support zip younger than this (ms) is served again rather than built anew.
pub const SUPPORT_ZIP_FRESH_MS: i64 = 5 * 60_000;

/// Largest support zip a node may upload (bytes).
pub const MAX_SUPPORT_ZIP_BYTES: usize = 8 * 1024 * 1024;

/// The support-zip part of a leased job: which zip to build and upload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LeasedSupportZip {
    /// The zip's id: the node uploads to `…/nodes/support-zips/{id}`.
    pub id: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: i64, seen: Option<i64>, clone: bool) -> FarmNode {
        FarmNode {
            id,
            name: format!("n{id}"),
            lookup: String::new(),
            hash: String::new(),
            created_at: Timestamp(0),
            last_seen: seen.map(Timestamp),
            clone_url: clone.then(|| format!("http://127.0.0.1:{}", 9000 + id)),
            state: MeshNodeState::Available,
        }
    }

    #[test]
    fn states_read_bitbucket_names_and_active() {
        assert_eq!(MeshNodeState::parse_request("active"), Some(MeshNodeState::Available));
        assert_eq!(MeshNodeState::parse_request("DRAINING"), Some(MeshNodeState::Draining));
        assert_eq!(MeshNodeState::parse_request("gone"), None);
    }

    #[test]
    fn a_node_unseen_for_the_live_window_is_offline() {
        let now = Timestamp(1_000_000);
        assert!(!MeshNode::of(&node(1, Some(now.millis() - 1_000), true), now).offline);
        assert!(MeshNode::of(&node(1, Some(now.millis() - LIVE_WINDOW_MS - 1), true), now).offline);
        assert!(MeshNode::of(&node(1, None, true), now).offline);
        let mut off = node(2, Some(now.millis()), true);
        off.state = MeshNodeState::Offline;
        assert!(MeshNode::of(&off, now).offline);
    }

    #[test]
    fn the_report_lists_every_link_and_says_which_were_never_measured() {
        let nodes = [node(1, Some(1), true), node(2, Some(1), true), node(3, Some(1), false)];
        let links = [
            Link { node_id: 1, peer_id: 0, reachable: true, round_trip_ms: Some(4), error: None },
            Link { node_id: 1, peer_id: 2, reachable: false, round_trip_ms: None, error: Some("refused".into()) },
        ];
        let report = connectivity(&nodes, &links);
        assert_eq!(report.reports.len(), 4);
        assert_eq!(report.reports[0].node.kind, "BITBUCKET");
        assert_eq!(report.reports[0].summaries[0].summary.round_trip_time, Some(4));
        assert!(!report.reports[0].summaries[1].summary.reachable);
        // Node 1 sees the edge and node 2 (node 3 serves no clones).
        let one = &report.reports[1];
        assert_eq!(one.summaries.len(), 2);
        assert_eq!(one.summaries[1].summary.error_message.as_deref(), Some("refused"));
        // Node 3 sees the edge, node 1 and node 2.
        assert_eq!(report.reports[3].summaries.len(), 3);
    }
}
