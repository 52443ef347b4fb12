//! GitLab's push-mirror semantics, written once.

use std::collections::BTreeMap;

use gix_hash::ObjectId;

use crate::filters::{BranchFilter, FilterError};

/// A ref namespace snapshot: full ref name (`refs/heads/main`) → object id.
pub type Refs = BTreeMap<String, ObjectId>;

/// Answers "is `ancestor` reachable from `descendant`?" from the node's local repository.
pub trait Ancestry {
    /// Why the question could not be answered.
    type Error;
    /// Whether `ancestor` is `descendant` or one of its ancestors. An object the repository does
    /// not have (a target-only commit) is never an ancestor.
    fn is_ancestor(&mut self, ancestor: &ObjectId, descendant: &ObjectId) -> Result<bool, Self::Error>;
}

/// What happens to a ref that only the target has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetOnlyRefs {
    /// Left alone.
    Keep,
    /// Deleted if its tip is merged into the source's default branch (GitLab push mirrors).
    DeleteIfMerged,
    /// Deleted (a pull mirror that overwrites: the copy follows upstream exactly).
    Delete,
}

/// The mirror settings the plan depends on.
#[derive(Debug, Clone)]
pub struct MirrorRules {
    /// Which branches are mirrored.
    pub branches: BranchFilter,
    /// Never force; skip and report diverged refs instead.
    pub keep_divergent_refs: bool,
    /// What to do with refs only the target has.
    pub target_only: TargetOnlyRefs,
    /// The source's default branch (short name): pushed first, and the reference for deletions.
    pub default_branch: String,
    /// Protected branch names and wildcard patterns (until a project protects any, its default
    /// branch, as in GitLab): what `only_protected_branches` carries.
    pub protected: Vec<String>,
    /// Ask the ancestry about every moved ref, even where the answer changes nothing (with
    /// `keep_divergent_refs` off a moved ref is pushed with force either way, and GitLab does not
    /// ask). Dry runs turn it on to tell fast-forwards from forced updates; real runs save the cost.
    pub check_fast_forwards: bool,
}

impl MirrorRules {
    /// A push mirror's rules, from its settings: `keep_divergent_refs` never forces nor deletes;
    /// otherwise diverged refs are forced and target-only refs deleted when merged into the default branch.
    pub fn push(
        only_protected_branches: bool,
        mirror_branch_regex: Option<&str>,
        keep_divergent_refs: bool,
        default_branch: &str,
    ) -> Result<Self, FilterError> {
        let branches = BranchFilter::new(only_protected_branches, mirror_branch_regex)?;
        let target_only = if keep_divergent_refs { TargetOnlyRefs::Keep } else { TargetOnlyRefs::DeleteIfMerged };
        Ok(Self::new(branches, keep_divergent_refs, target_only, default_branch))
    }

    /// A pull mirror's rules, from its settings: with `overwrite` the copy follows upstream
    /// exactly (forced moves, deletions); without, diverged refs are kept and reported and nothing
    /// is deleted.
    pub fn pull(
        only_protected_branches: bool,
        mirror_branch_regex: Option<&str>,
        overwrite: bool,
        default_branch: &str,
    ) -> Result<Self, FilterError> {
        let branches = BranchFilter::new(only_protected_branches, mirror_branch_regex)?;
        let target_only = if overwrite { TargetOnlyRefs::Delete } else { TargetOnlyRefs::Keep };
        Ok(Self::new(branches, !overwrite, target_only, default_branch))
    }

    fn new(
        branches: BranchFilter,
        keep_divergent_refs: bool,
        target_only: TargetOnlyRefs,
        default_branch: &str,
    ) -> Self {
        Self {
            branches,
            keep_divergent_refs,
            target_only,
            default_branch: default_branch.to_owned(),
            protected: vec![default_branch.to_owned()],
            check_fast_forwards: false,
        }
    }

    /// The same rules with the project's protected branch names and patterns (none: the
    /// default branch stays the protected one).
    #[must_use]
    pub fn with_protected(self, patterns: &[String]) -> Self {
        if patterns.is_empty() { self } else { Self { protected: patterns.to_vec(), ..self } }
    }

    /// The same rules, telling fast-forwards from forced updates even where nothing depends on it.
    #[must_use]
    pub fn checking_fast_forwards(self) -> Self {
        Self { check_fast_forwards: true, ..self }
    }

    /// Whether a ref is mirrored at all: tags always, branches through the filter, nothing else.
    pub fn mirrors(&self, name: &str) -> bool {
        if name.starts_with("refs/tags/") {
            return true;
        }
        match name.strip_prefix("refs/heads/") {
            Some(branch) => self
                .branches
                .includes(branch, self.protected.iter().any(|p| crate::mirrors::protected::pattern_matches(p, branch))),
            None => false,
        }
    }
}

/// What happens to one ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefAction {
    /// The target lacks it: push it.
    Create,
    /// The target's tip is an ancestor of the source's: a plain push.
    FastForward,
    /// The target diverged and may be overwritten: a forced push.
    Force,
    /// Only on the target and safe to remove: push a deletion.
    Delete,
    /// The target diverged and must be kept: not pushed, reported.
    SkipDiverged,
    /// Only on the target and not provably merged: left alone.
    KeepTargetOnly,
}

impl RefAction {
    /// Lower-case name for plans and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::FastForward => "fast-forward",
            Self::Force => "force",
            Self::Delete => "delete",
            Self::SkipDiverged => "skip-diverged",
            Self::KeepTargetOnly => "keep",
        }
    }

    /// Whether the action sends anything to the target.
    pub fn pushes(self) -> bool {
        matches!(self, Self::Create | Self::FastForward | Self::Force | Self::Delete)
    }
}

/// One planned ref change and the rule that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// Full ref name.
    pub name: String,
    /// The target's current tip, if any.
    pub old: Option<ObjectId>,
    /// The tip to set, or `None` to delete.
    pub new: Option<ObjectId>,
    /// What happens.
    pub action: RefAction,
    /// Why, in words.
    pub rule: &'static str,
}

impl RefUpdate {
    /// The `git push` refspec for this update (`+` only for forced pushes; `:ref` to delete).
    pub fn refspec(&self) -> Option<String> {
        match (self.action, self.new) {
            (RefAction::Delete, _) => Some(format!(":{}", self.name)),
            (RefAction::Force, Some(new)) => Some(format!("+{new}:{}", self.name)),
            (RefAction::Create | RefAction::FastForward, Some(new)) => Some(format!("{new}:{}", self.name)),
            _ => None,
        }
    }
}

/// The outcome of planning: the refs to push (default branch first), the ones held back, and
/// how many already matched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefUpdatePlan {
    /// Ref updates to send, the default branch first, then by name.
    pub updates: Vec<RefUpdate>,
    /// Refs deliberately not touched (diverged and kept, or target-only and unmerged).
    pub held: Vec<RefUpdate>,
    /// Refs already equal on both sides.
    pub unchanged: usize,
}

impl RefUpdatePlan {
    /// The diverged refs that were skipped, for GitLab's error message.
    pub fn diverged(&self) -> impl Iterator<Item = &str> {
        self.held.iter().filter(|u| u.action == RefAction::SkipDiverged).map(|u| u.name.as_str())
    }

    /// GitLab's push-mirror `last_error` when diverged refs were skipped, or `None`.
    pub fn divergence_error(&self) -> Option<String> {
        self.diverged_message("Some refs have diverged and have not been updated on the remote:")
    }

    /// The pull-mirror counterpart: refs upstream rewrote that the copy kept.
    pub fn pull_divergence_error(&self) -> Option<String> {
        self.diverged_message("Some refs have diverged upstream and have not been updated in the mirror:")
    }

    /// Carries the updates out on a ref set (what the other side has once the plan is pushed);
    /// held refs stay as they were.
    pub fn apply_to(&self, refs: &mut Refs) {
        for u in &self.updates {
            match u.new {
                Some(new) => refs.insert(u.name.clone(), new),
                None => refs.remove(&u.name),
            };
        }
    }

    fn diverged_message(&self, headline: &str) -> Option<String> {
        let names: Vec<&str> = self.diverged().collect();
        (!names.is_empty()).then(|| format!("{headline}\n\n{}", names.join("\n")))
    }
}

/// The canonical listing of a ref set — `<oid> <name>` lines sorted by name — whose digest is its
/// fingerprint: equal listings, equal content (Bitbucket's `hashes.content` is SHA-256 of it).
pub fn ref_listing(refs: &Refs) -> String {
    refs.iter().map(|(name, oid)| format!("{oid} {name}\n")).collect()
}

/// Plans a push from `source` to `target` under GitLab's rules.
///
/// Both ref maps are sorted, so one merge-join pass visits each name once: refs on both sides are
/// compared (and only differing ones cost an ancestry question), one-sided refs are created or
/// judged by the target-only rule.
pub fn plan_push<A: Ancestry>(
    source: &Refs,
    target: &Refs,
    rules: &MirrorRules,
    ancestry: &mut A,
) -> Result<RefUpdatePlan, A::Error> {
    use std::cmp::Ordering;
    use std::iter::Peekable;

    let mut plan = RefUpdatePlan::default();
    let default_ref = format!("refs/heads/{}", rules.default_branch);
    let default_tip = source.get(&default_ref);
    let mut src: Peekable<_> = source.iter().peekable();
    let mut dst: Peekable<_> = target.iter().peekable();
    loop {
        let side = match (src.peek(), dst.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((s, _)), Some((t, _))) => s.as_str().cmp(t.as_str()),
        };
        let (name, new, old) = match side {
            Ordering::Less => src.next().map(|(n, o)| (n, Some(*o), None)),
            Ordering::Greater => dst.next().map(|(n, o)| (n, None, Some(*o))),
            Ordering::Equal => src.next().zip(dst.next()).map(|((n, s), (_, t))| (n, Some(*s), Some(*t))),
        }
        .expect("peeked above");
        if !rules.mirrors(name) {
            continue;
        }
        let (action, rule) = match (new, old) {
            (Some(new), Some(old)) if new == old => {
                plan.unchanged += 1;
                continue;
            }
            (Some(_), None) => (RefAction::Create, "missing on the target"),
            (Some(_), Some(_)) if !rules.keep_divergent_refs && !rules.check_fast_forwards => {
                (RefAction::Force, "moved, and keep_divergent_refs is off: pushed with force, ancestry not asked")
            }
            (Some(new), Some(old)) if ancestry.is_ancestor(&old, &new)? => {
                (RefAction::FastForward, "target tip is an ancestor of the source tip")
            }
            (Some(_), Some(_)) if rules.keep_divergent_refs => {
                (RefAction::SkipDiverged, "diverged, and keep_divergent_refs keeps it")
            }
            (Some(_), Some(_)) => (RefAction::Force, "diverged, and keep_divergent_refs is off: overwritten"),
            (None, Some(old)) => match rules.target_only {
                TargetOnlyRefs::Keep => {
                    (RefAction::KeepTargetOnly, "only on the target; diverged refs are kept, nothing is deleted")
                }
                TargetOnlyRefs::Delete => (RefAction::Delete, "gone from the source, and the mirror overwrites"),
                TargetOnlyRefs::DeleteIfMerged => match default_tip {
                    Some(tip) if ancestry.is_ancestor(&old, tip)? => {
                        (RefAction::Delete, "only on the target and merged into the default branch")
                    }
                    _ => (RefAction::KeepTargetOnly, "only on the target and not merged into the default branch"),
                },
            },
            (None, None) => continue,
        };
        let update = RefUpdate { name: name.clone(), old, new, action, rule };
        if action.pushes() { plan.updates.push(update) } else { plan.held.push(update) }
    }
    // The default branch goes first, so a partial push still leaves the mirror's main line
    // current; the rest keep their (sorted) order.
    if let Some(pos) = plan.updates.iter().position(|u| u.name == default_ref) {
        let default = plan.updates.remove(pos);
        plan.updates.insert(0, default);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use std::collections::{HashMap, HashSet};
    use std::convert::Infallible;

    use super::*;

    /// A commit graph: child → parents.
    #[derive(Default)]
    struct Graph(HashMap<ObjectId, Vec<ObjectId>>);

    impl Graph {
        fn commit(&mut self, n: u8, parents: &[u8]) -> ObjectId {
            let id = oid(n);
            self.0.insert(id, parents.iter().map(|p| oid(*p)).collect());
            id
        }
    }

    impl Ancestry for Graph {
        type Error = Infallible;
        fn is_ancestor(&mut self, a: &ObjectId, d: &ObjectId) -> Result<bool, Infallible> {
            let (mut stack, mut seen) = (vec![*d], HashSet::new());
            while let Some(c) = stack.pop() {
                if c == *a {
                    return Ok(true);
                }
                if seen.insert(c) {
                    stack.extend(self.0.get(&c).into_iter().flatten().copied());
                }
            }
            Ok(false)
        }
    }

    fn oid(n: u8) -> ObjectId {
        ObjectId::from_bytes_or_panic(&[n; 20])
    }

    fn refs(pairs: &[(&str, u8)]) -> Refs {
        pairs.iter().map(|(n, o)| ((*n).to_owned(), oid(*o))).collect()
    }

    fn rules(keep: bool) -> MirrorRules {
        MirrorRules::push(false, None, keep, "main").expect("valid").checking_fast_forwards()
    }

    /// Answers every question with a panic: for plans that must not ask.
    struct NoQuestions;

    impl Ancestry for NoQuestions {
        type Error = Infallible;
        fn is_ancestor(&mut self, _: &ObjectId, _: &ObjectId) -> Result<bool, Infallible> {
            panic!("the plan asked an ancestry question it did not need")
        }
    }

    /// 1 ← 2 ← 3 (main); 2 ← 4 (diverged target commit); 2 ← 5 (feature merged? no: 5 is merged into 3? no)
    fn graph() -> Graph {
        let mut g = Graph::default();
        g.commit(1, &[]);
        g.commit(2, &[1]);
        g.commit(3, &[2]);
        g.commit(4, &[2]);
        g.commit(6, &[3]);
        g
    }

    fn actions(plan: &RefUpdatePlan) -> Vec<(&str, RefAction)> {
        plan.updates.iter().chain(&plan.held).map(|u| (u.name.as_str(), u.action)).collect()
    }

    #[test]
    fn creates_fast_forwards_and_skips_unchanged_default_first() {
        let source = refs(&[("refs/heads/a", 2), ("refs/heads/main", 3), ("refs/tags/v1", 1), ("refs/heads/same", 1)]);
        let target = refs(&[("refs/heads/main", 2), ("refs/heads/same", 1)]);
        let plan = plan_push(&source, &target, &rules(false), &mut graph()).expect("plans");
        assert_eq!(
            actions(&plan),
            vec![
                ("refs/heads/main", RefAction::FastForward),
                ("refs/heads/a", RefAction::Create),
                ("refs/tags/v1", RefAction::Create)
            ]
        );
        assert_eq!(plan.unchanged, 1);
        assert_eq!(plan.updates[0].refspec(), Some(format!("{}:refs/heads/main", oid(3))));
    }

    #[test]
    fn diverged_is_forced_or_skipped() {
        let source = refs(&[("refs/heads/main", 3)]);
        let target = refs(&[("refs/heads/main", 4)]);
        let forced = plan_push(&source, &target, &rules(false), &mut graph()).expect("plans");
        assert_eq!(actions(&forced), vec![("refs/heads/main", RefAction::Force)]);
        assert_eq!(forced.updates[0].refspec(), Some(format!("+{}:refs/heads/main", oid(3))));
        assert_eq!(forced.divergence_error(), None);
        let kept = plan_push(&source, &target, &rules(true), &mut graph()).expect("plans");
        assert_eq!(actions(&kept), vec![("refs/heads/main", RefAction::SkipDiverged)]);
        assert!(kept.updates.is_empty());
        assert_eq!(
            kept.divergence_error().as_deref(),
            Some("Some refs have diverged and have not been updated on the remote:\n\nrefs/heads/main")
        );
    }

    #[test]
    fn overwriting_mirrors_push_moved_refs_with_force_without_asking() {
        let source = refs(&[("refs/heads/main", 3), ("refs/heads/a", 6), ("refs/tags/v1", 1)]);
        let target = refs(&[("refs/heads/main", 2), ("refs/heads/a", 4), ("refs/tags/v1", 1)]);
        let plain = MirrorRules::push(false, None, false, "main").expect("valid");
        let plan = plan_push(&source, &target, &plain, &mut NoQuestions).expect("plans");
        assert_eq!(actions(&plan), vec![("refs/heads/main", RefAction::Force), ("refs/heads/a", RefAction::Force)]);
        assert!(plan.updates.iter().all(|u| u.refspec().is_some_and(|s| s.starts_with('+'))));
        // Asked to tell them apart, the same plan shows the fast-forward.
        let checked = plan_push(&source, &target, &plain.checking_fast_forwards(), &mut graph()).expect("plans");
        assert_eq!(
            actions(&checked),
            vec![("refs/heads/main", RefAction::FastForward), ("refs/heads/a", RefAction::Force)]
        );
    }

    #[test]
    fn target_only_refs_are_deleted_only_when_merged_and_never_when_keeping() {
        let source = refs(&[("refs/heads/main", 6)]);
        let target =
            refs(&[("refs/heads/main", 6), ("refs/heads/merged", 2), ("refs/heads/unmerged", 4), ("refs/tags/old", 1)]);
        let plan = plan_push(&source, &target, &rules(false), &mut graph()).expect("plans");
        assert_eq!(
            actions(&plan),
            vec![
                ("refs/heads/merged", RefAction::Delete),
                ("refs/tags/old", RefAction::Delete),
                ("refs/heads/unmerged", RefAction::KeepTargetOnly)
            ]
        );
        assert_eq!(plan.updates[0].refspec().as_deref(), Some(":refs/heads/merged"));
        let mut after = target.clone();
        plan.apply_to(&mut after);
        assert_eq!(after, refs(&[("refs/heads/main", 6), ("refs/heads/unmerged", 4)]));
        let keep = plan_push(&source, &target, &rules(true), &mut graph()).expect("plans");
        assert!(keep.updates.is_empty());
        assert!(keep.held.iter().all(|u| u.action == RefAction::KeepTargetOnly));
    }

    #[test]
    fn filters_apply_to_branches_but_never_to_tags() {
        let source =
            refs(&[("refs/heads/main", 3), ("refs/heads/release/1", 2), ("refs/heads/dev", 2), ("refs/tags/v1", 1)]);
        let target = refs(&[("refs/heads/stale", 1)]);
        let mut protected = rules(false);
        protected.branches = BranchFilter::new(true, None).expect("valid");
        let plan = plan_push(&source, &target, &protected, &mut graph()).expect("plans");
        assert_eq!(actions(&plan), vec![("refs/heads/main", RefAction::Create), ("refs/tags/v1", RefAction::Create)]);
        let mut regex = rules(false);
        regex.branches = BranchFilter::new(false, Some("^release/")).expect("valid");
        let plan = plan_push(&source, &target, &regex, &mut graph()).expect("plans");
        assert_eq!(
            actions(&plan),
            vec![("refs/heads/release/1", RefAction::Create), ("refs/tags/v1", RefAction::Create)]
        );
    }

    #[test]
    fn pull_rules_overwrite_and_delete_or_keep_everything() {
        let upstream = refs(&[("refs/heads/main", 3)]);
        let copy = refs(&[("refs/heads/main", 4), ("refs/heads/gone", 4)]);
        let overwrite = plan_push(
            &upstream,
            &copy,
            &MirrorRules::pull(false, None, true, "main").expect("valid"),
            &mut NoQuestions,
        )
        .expect("plans");
        assert_eq!(
            actions(&overwrite),
            vec![("refs/heads/main", RefAction::Force), ("refs/heads/gone", RefAction::Delete)]
        );
        let keep =
            plan_push(&upstream, &copy, &MirrorRules::pull(false, None, false, "main").expect("valid"), &mut graph())
                .expect("plans");
        assert_eq!(
            actions(&keep),
            vec![("refs/heads/gone", RefAction::KeepTargetOnly), ("refs/heads/main", RefAction::SkipDiverged)]
        );
        assert!(
            keep.pull_divergence_error()
                .is_some_and(|e| e.contains("diverged upstream") && e.ends_with("refs/heads/main"))
        );
    }

    #[test]
    fn listing_is_sorted_and_stable() {
        let a = refs(&[("refs/tags/v1", 1), ("refs/heads/main", 2)]);
        assert_eq!(ref_listing(&a), format!("{} refs/heads/main\n{} refs/tags/v1\n", oid(2), oid(1)));
        assert_ne!(ref_listing(&a), ref_listing(&refs(&[("refs/heads/main", 2)])));
    }

    #[test]
    fn ignores_refs_outside_heads_and_tags() {
        let source = refs(&[("refs/heads/main", 3), ("refs/merge-requests/1/head", 4), ("HEAD", 3)]);
        let target = refs(&[("refs/pull/9/head", 4)]);
        let plan = plan_push(&source, &target, &rules(false), &mut graph()).expect("plans");
        assert_eq!(actions(&plan), vec![("refs/heads/main", RefAction::Create)]);
    }
}
