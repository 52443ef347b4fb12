//! Forks kept in step with their origin (Bitbucket's ref sync, seed 001): the wire types, and the
//! one rule of what a sync does to each ref.
//!
//! A sync never loses a fork's own commits. Branches behind the origin fast-forward; a tag moves
//! only while the fork's tag still equals the origin's previous value; refs new in the origin are
//! created unless the fork has one of that name. Nothing is forced or deleted. Refs that cannot be
//! brought in step are reported: AHEAD (the fork has commits the origin lacks, and nothing to
//! take), DIVERGED (both sides have commits), ORPHANED (the origin deleted it, the fork keeps it).
//! MERGE and DISCARD bring one ref back by hand.

use serde::{Deserialize, Serialize};

use crate::sync::{Ancestry, RefAction, RefUpdate, Refs};

/// Why a ref is out of step with the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefSyncState {
    /// The fork has commits the origin lacks; nothing to take from the origin.
    Ahead,
    /// Both have commits the other lacks.
    Diverged,
    /// The origin deleted it; the fork keeps its copy.
    Orphaned,
}

impl RefSyncState {
    /// The storage and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ahead => "AHEAD",
            Self::Diverged => "DIVERGED",
            Self::Orphaned => "ORPHANED",
        }
    }

    /// Reads a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "AHEAD" => Some(Self::Ahead),
            "DIVERGED" => Some(Self::Diverged),
            "ORPHANED" => Some(Self::Orphaned),
            _ => None,
        }
    }
}

/// Bitbucket's `RestRejectedRef`: a ref sync could not bring in step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RejectedRef {
    /// The full ref name (`refs/heads/main`).
    pub id: String,
    /// The short name (`main`).
    pub display_id: String,
    /// `BRANCH` or `TAG`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Why it is out of step.
    pub state: RefSyncState,
    /// Whether it is a tag.
    pub tag: bool,
}

impl RejectedRef {
    /// The wire form of `name` in `state`.
    pub fn new(name: &str, state: RefSyncState) -> Self {
        let tag = name.starts_with("refs/tags/");
        let display = name.strip_prefix("refs/heads/").or_else(|| name.strip_prefix("refs/tags/")).unwrap_or(name);
        Self {
            id: name.to_owned(),
            display_id: display.to_owned(),
            kind: if tag { "TAG" } else { "BRANCH" }.to_owned(),
            state,
            tag,
        }
    }
}

/// Bitbucket's `RestRefSyncStatus`, plus why sync is unavailable (ours).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RefSyncStatus {
    /// Whether sync can run: the repository is a fork whose origin still exists.
    pub available: bool,
    /// Whether sync is switched on.
    pub enabled: bool,
    /// The last completed sync (epoch ms); absent before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<i64>,
    /// Refs with commits the origin lacks.
    pub ahead_refs: Vec<RejectedRef>,
    /// Refs where both sides have commits.
    pub diverged_refs: Vec<RejectedRef>,
    /// Refs the origin deleted.
    pub orphaned_refs: Vec<RejectedRef>,
    /// Why sync is unavailable (ours; absent while available).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_reason: Option<String>,
    /// Why the last sync failed (ours; absent after a success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl RefSyncStatus {
    /// A status with the out-of-step refs sorted into their lists (by name within each).
    pub fn new(available: bool, enabled: bool, last_sync: Option<i64>, mut refs: Vec<(String, RefSyncState)>) -> Self {
        refs.sort();
        let list = |state| refs.iter().filter(|(_, s)| *s == state).map(|(n, s)| RejectedRef::new(n, *s)).collect();
        Self {
            available,
            enabled,
            last_sync,
            ahead_refs: list(RefSyncState::Ahead),
            diverged_refs: list(RefSyncState::Diverged),
            orphaned_refs: list(RefSyncState::Orphaned),
            unavailable_reason: None,
            last_error: None,
        }
    }

    /// The same status restricted to one ref (`?at=`, a full or short name): its lists hold it
    /// only if it is out of step.
    #[must_use]
    pub fn at(mut self, wanted: &str) -> Self {
        let keep = |r: &RejectedRef| r.id == wanted || r.display_id == wanted;
        for list in [&mut self.ahead_refs, &mut self.diverged_refs, &mut self.orphaned_refs] {
            list.retain(keep);
        }
        self
    }

    /// The status in a few words, for the widget's verdict line.
    pub fn headline(&self) -> String {
        // Pushed piece by piece: `format!` and `join` cost the widget bytes.
        let mut counts = String::new();
        let lists =
            [(&self.ahead_refs, " ahead"), (&self.diverged_refs, " diverged"), (&self.orphaned_refs, " orphaned")];
        for (list, word) in lists.into_iter().filter(|(list, _)| !list.is_empty()) {
            counts.push_str(if counts.is_empty() { "fork: " } else { ", " });
            crate::text::push_decimal(&mut counts, list.len() as u64, 1);
            counts.push_str(word);
        }
        match (self.available, self.enabled) {
            (false, _) => "fork sync unavailable".into(),
            (true, false) => "fork sync off".into(),
            (true, true) if counts.is_empty() => "fork in step with its origin".into(),
            (true, true) => counts,
        }
    }

    /// The out-of-step ref so named (full or short name), if any.
    pub fn find(&self, wanted: &str) -> Option<&RejectedRef> {
        [&self.ahead_refs, &self.diverged_refs, &self.orphaned_refs]
            .into_iter()
            .flatten()
            .find(|r| r.id == wanted || r.display_id == wanted)
    }
}

/// A manual operation on one ref (`POST …/synchronize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncAction {
    /// Merge the origin's ref into the fork's (DIVERGED refs only).
    Merge,
    /// Set the fork's ref to the origin's, or delete it where the origin deleted it.
    Discard,
}

/// A fork action as a job carries it to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ForkAction {
    /// What to do.
    pub action: SyncAction,
    /// The full ref name.
    pub ref_name: String,
    /// The merge commit's message (MERGE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The merge commit's author and committer: the calling user's display name…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_name: Option<String>,
    /// …and e-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_email: Option<String>,
    /// Makes each request its own job (two requests never share one).
    pub nonce: String,
}

/// The default merge commit message.
pub fn default_merge_message(display_id: &str) -> String {
    format!("Merge {display_id} from upstream")
}

/// `POST /rest/sync/latest/projects/{key}/repos/{slug}`: `{enabled}` (strings accepted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct SyncToggle {
    /// Switch sync on (a sync runs before the answer) or off.
    pub enabled: Option<bool>,
}

impl crate::api::FromFields for SyncToggle {
    fn from_fields(fields: &crate::api::Fields) -> Result<Self, crate::api::FieldError> {
        Ok(Self { enabled: fields.boolean("enabled")? })
    }
}

/// The context of a synchronize request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema), schemars(rename_all = "camelCase"))]
pub struct SynchronizeContext {
    /// The merge commit's message (MERGE only).
    pub commit_message: Option<String>,
}

/// `POST …/synchronize`: `{refId, action, context: {commitMessage}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema), schemars(rename_all = "camelCase"))]
pub struct SynchronizeRequest {
    /// The ref (full or short name).
    pub ref_id: Option<String>,
    /// `MERGE` or `DISCARD` (`REBASE` is not implemented).
    pub action: Option<String>,
    /// Action options.
    pub context: Option<SynchronizeContext>,
}

impl crate::api::FromFields for SynchronizeRequest {
    fn from_fields(fields: &crate::api::Fields) -> Result<Self, crate::api::FieldError> {
        let context = match fields.object("context")? {
            Some(c) => Some(SynchronizeContext { commit_message: c.string("commitMessage")? }),
            None => None,
        };
        Ok(Self { ref_id: fields.string("refId")?, action: fields.string("action")?, context })
    }
}

impl crate::api::FromFields for ForkAction {
    fn from_fields(fields: &crate::api::Fields) -> Result<Self, crate::api::FieldError> {
        use crate::api::FieldError;
        let action = match fields.string("action")?.as_deref() {
            Some("MERGE") => SyncAction::Merge,
            Some("DISCARD") => SyncAction::Discard,
            _ => return Err(FieldError::Invalid("action")),
        };
        Ok(Self {
            action,
            ref_name: fields.string("refName")?.ok_or(FieldError::Missing("refName"))?,
            message: fields.string("message")?,
            author_name: fields.string("authorName")?,
            author_email: fields.string("authorEmail")?,
            nonce: fields.string("nonce")?.unwrap_or_default(),
        })
    }
}

/// What a sync does to a fork: the updates to push (each guarded by the value it expects), the
/// refs it leaves out of step, and what to remember as the origin's state for the next sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForkSyncPlan {
    /// Updates to push to the fork: creations, fast-forwards, tag moves (the only forced kind).
    pub updates: Vec<RefUpdate>,
    /// Refs left out of step, by name.
    pub rejected: Vec<(String, RefSyncState)>,
    /// Refs already equal.
    pub in_step: usize,
    /// The origin's refs as the next sync should take them to have been: the origin now, plus
    /// the previous value of each orphaned ref (so it stays orphaned, not mistaken for the fork's own).
    pub remembered: Refs,
}

/// Plans a sync of `fork` towards `origin`. `previous` is the origin as the last sync saw it (what
/// was remembered then), if known: it tells a tag the fork moved from one the origin moved, a
/// branch the fork deleted from one new in the origin, and a branch the origin deleted from one
/// only the fork ever had. Without it, tags are never moved, every origin ref the fork lacks is
/// created, and refs only the fork has are its own. `ancestry` must know both sides' commits.
pub fn plan_fork_sync<A: Ancestry>(
    origin: &Refs,
    previous: Option<&Refs>,
    fork: &Refs,
    ancestry: &mut A,
) -> Result<ForkSyncPlan, A::Error> {
    let mut plan = ForkSyncPlan { remembered: origin.clone(), ..ForkSyncPlan::default() };
    let synced = |name: &str| name.starts_with("refs/heads/") || name.starts_with("refs/tags/");
    for (name, theirs) in origin.iter().filter(|(n, _)| synced(n)) {
        let was = previous.and_then(|p| p.get(name));
        let update = |old, action, rule| RefUpdate { name: name.clone(), old, new: Some(*theirs), action, rule };
        match fork.get(name) {
            None if previous.is_some() && was.is_some() => {} // The fork deleted it: its choice.
            None => plan.updates.push(update(None, RefAction::Create, "new in the origin")),
            Some(ours) if ours == theirs => plan.in_step += 1,
            Some(ours) if name.starts_with("refs/tags/") => {
                if was == Some(ours) {
                    plan.updates.push(update(Some(*ours), RefAction::Force, "tag moved in the origin"));
                } else {
                    let state = classify(ours, theirs, ancestry)?;
                    plan.rejected.push((name.clone(), state.unwrap_or(RefSyncState::Diverged)));
                }
            }
            Some(ours) => match classify(ours, theirs, ancestry)? {
                None => plan.updates.push(update(Some(*ours), RefAction::FastForward, "behind the origin")),
                Some(state) => plan.rejected.push((name.clone(), state)),
            },
        }
    }
    if let Some(previous) = previous {
        for (name, was) in previous.iter().filter(|(n, _)| synced(n) && !origin.contains_key(*n)) {
            if fork.contains_key(name) {
                plan.rejected.push((name.clone(), RefSyncState::Orphaned));
                plan.remembered.insert(name.clone(), *was);
            }
        }
    }
    plan.rejected.sort();
    Ok(plan)
}

/// Where the fork's `ours` stands against the origin's `theirs` (different commits): `None` if it
/// is behind (an ancestor: a fast-forward brings it in step), else AHEAD or DIVERGED.
fn classify<A: Ancestry>(
    ours: &gix_hash::ObjectId,
    theirs: &gix_hash::ObjectId,
    ancestry: &mut A,
) -> Result<Option<RefSyncState>, A::Error> {
    if ancestry.is_ancestor(ours, theirs)? {
        Ok(None)
    } else if ancestry.is_ancestor(theirs, ours)? {
        Ok(Some(RefSyncState::Ahead))
    } else {
        Ok(Some(RefSyncState::Diverged))
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use std::collections::{BTreeMap, BTreeSet};

    use gix_hash::ObjectId;

    use super::*;

    /// A commit graph: each commit's parents.
    #[derive(Default)]
    struct Graph(BTreeMap<ObjectId, Vec<ObjectId>>);

    impl Ancestry for Graph {
        type Error = std::convert::Infallible;
        fn is_ancestor(&mut self, ancestor: &ObjectId, descendant: &ObjectId) -> Result<bool, Self::Error> {
            let mut todo = vec![*descendant];
            let mut seen = BTreeSet::new();
            while let Some(c) = todo.pop() {
                if c == *ancestor {
                    return Ok(true);
                }
                if seen.insert(c) {
                    todo.extend(self.0.get(&c).cloned().unwrap_or_default());
                }
            }
            Ok(false)
        }
    }

    fn oid(n: u8) -> ObjectId {
        ObjectId::from_hex(format!("{n:02x}").repeat(20).as_bytes()).expect("hex")
    }

    fn refs(pairs: &[(&str, u8)]) -> Refs {
        pairs.iter().map(|(n, o)| ((*n).to_owned(), oid(*o))).collect()
    }

    /// 1 ← 2 ← 3 (origin moved on), 2 ← 4 (fork's own commit), 3 ← 5.
    fn graph() -> Graph {
        let mut g = Graph::default();
        g.0.insert(oid(2), vec![oid(1)]);
        g.0.insert(oid(3), vec![oid(2)]);
        g.0.insert(oid(4), vec![oid(2)]);
        g.0.insert(oid(5), vec![oid(3)]);
        g
    }

    fn plan(origin: &Refs, previous: Option<&Refs>, fork: &Refs) -> ForkSyncPlan {
        match plan_fork_sync(origin, previous, fork, &mut graph()) {
            Ok(p) => p,
            Err(e) => match e {},
        }
    }

    fn names(p: &ForkSyncPlan) -> Vec<(&str, RefAction)> {
        p.updates.iter().map(|u| (u.name.as_str(), u.action)).collect()
    }

    #[test]
    fn branches_fast_forward_and_report_ahead_or_diverged() {
        let origin =
            refs(&[("refs/heads/behind", 3), ("refs/heads/ahead", 2), ("refs/heads/both", 3), ("refs/heads/same", 1)]);
        let fork =
            refs(&[("refs/heads/behind", 2), ("refs/heads/ahead", 4), ("refs/heads/both", 4), ("refs/heads/same", 1)]);
        let p = plan(&origin, Some(&origin), &fork);
        assert_eq!(names(&p), [("refs/heads/behind", RefAction::FastForward)]);
        assert_eq!(p.updates[0].old, Some(oid(2)), "guarded by the fork's value");
        assert_eq!(
            p.rejected,
            [
                ("refs/heads/ahead".to_owned(), RefSyncState::Ahead),
                ("refs/heads/both".to_owned(), RefSyncState::Diverged)
            ]
        );
        assert_eq!(p.in_step, 1);
    }

    #[test]
    fn tags_move_only_while_the_fork_kept_the_origins_previous_value() {
        let previous = refs(&[("refs/tags/kept", 1), ("refs/tags/moved", 1)]);
        let origin = refs(&[("refs/tags/kept", 3), ("refs/tags/moved", 3)]);
        let fork = refs(&[("refs/tags/kept", 1), ("refs/tags/moved", 4)]);
        let p = plan(&origin, Some(&previous), &fork);
        assert_eq!(names(&p), [("refs/tags/kept", RefAction::Force)]);
        assert_eq!(p.rejected, [("refs/tags/moved".to_owned(), RefSyncState::Diverged)]);
        // Not knowing the origin's previous value, no tag is moved.
        let p = plan(&origin, None, &fork);
        assert!(p.updates.is_empty());
        assert_eq!(p.rejected.len(), 2);
    }

    #[test]
    fn new_origin_refs_are_created_unless_the_fork_deleted_them() {
        let previous = refs(&[("refs/heads/old", 1)]);
        let origin = refs(&[("refs/heads/old", 1), ("refs/heads/new", 3), ("refs/tags/v1", 3)]);
        let p = plan(&origin, Some(&previous), &Refs::new());
        assert_eq!(names(&p), [("refs/heads/new", RefAction::Create), ("refs/tags/v1", RefAction::Create)]);
        // A first sync creates everything.
        assert_eq!(plan(&origin, None, &Refs::new()).updates.len(), 3);
    }

    #[test]
    fn refs_the_origin_deleted_are_orphaned_and_stay_so() {
        let previous = refs(&[("refs/heads/gone", 1), ("refs/heads/main", 1)]);
        let origin = refs(&[("refs/heads/main", 1)]);
        let fork = refs(&[("refs/heads/gone", 4), ("refs/heads/main", 1), ("refs/heads/mine", 4)]);
        let p = plan(&origin, Some(&previous), &fork);
        assert!(p.updates.is_empty(), "nothing deleted");
        assert_eq!(p.rejected, [("refs/heads/gone".to_owned(), RefSyncState::Orphaned)]);
        assert_eq!(p.remembered.get("refs/heads/gone"), Some(&oid(1)));
        let again = plan(&origin, Some(&p.remembered), &fork);
        assert_eq!(again.rejected, p.rejected, "still orphaned at the next sync; the fork's own branch never is");
    }

    #[test]
    fn status_lists_sort_by_state_and_narrow_to_one_ref() {
        let status = RefSyncStatus::new(
            true,
            true,
            Some(5),
            vec![
                ("refs/tags/v1".into(), RefSyncState::Diverged),
                ("refs/heads/b".into(), RefSyncState::Ahead),
                ("refs/heads/a".into(), RefSyncState::Diverged),
            ],
        );
        assert_eq!(status.diverged_refs.iter().map(|r| r.display_id.as_str()).collect::<Vec<_>>(), ["a", "v1"]);
        assert!(status.diverged_refs[1].tag);
        assert_eq!(status.diverged_refs[1].kind, "TAG");
        let one = status.clone().at("b");
        assert_eq!((one.ahead_refs.len(), one.diverged_refs.len()), (1, 0));
        assert_eq!(status.find("refs/heads/a").map(|r| r.state), Some(RefSyncState::Diverged));
        let json = serde_json::to_value(&status).expect("serialises");
        assert_eq!(json["aheadRefs"][0]["type"], "BRANCH");
        assert_eq!(json["lastSync"], 5);
    }
}
