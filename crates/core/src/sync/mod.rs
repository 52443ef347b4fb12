//! Planning a push mirror's update: which refs move, how, and by which rule.
//!
//! The planner is pure: it takes the source's refs (the node's local copy), the target's refs
//! (`git ls-remote`), the mirror's settings and an [`Ancestry`] oracle, and returns a
//! [`RefUpdatePlan`]. The runner carries the plan out with `git push`; `plan` on the CLI prints it.

mod plan;

pub use plan::{
    Ancestry, MirrorRules, RefAction, RefUpdate, RefUpdatePlan, Refs, TargetOnlyRefs, plan_push, ref_listing,
};
