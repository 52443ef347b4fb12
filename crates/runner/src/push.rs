//! Mirror updates. A pull refreshes the node's local copy from upstream under the repository's
//! pull-mirror rules; a push compares the copy with the target, lets the core plan, and pushes
//! only what changed — the default branch first, then in batches.

use mirrorfarm_core::mirrors::UpdateOutcome;
use mirrorfarm_core::nodes::LeasedPull;
use mirrorfarm_core::sync::{MirrorRules, RefAction, RefUpdate, RefUpdatePlan, plan_push};
use tracing::{info, warn};

use crate::git::{Git, GitError, Remote};

/// Why an update stopped before it had an outcome.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PushError {
    /// Git failed (network, authentication, rejection).
    #[error(transparent)]
    Git(#[from] GitError),
    /// The mirror's branch filter is invalid.
    #[error("invalid branch filter: {0}")]
    Filter(String),
    /// Asked to stop (shutdown, or the lease was lost) between steps.
    #[error("cancelled")]
    Cancelled,
}

/// A mirror's settings as the runner receives them.
#[derive(Debug, Clone)]
pub(crate) struct PushSettings {
    /// Default branch of the source.
    pub(crate) default_branch: String,
    /// Keep diverged refs.
    pub(crate) keep_divergent_refs: bool,
    /// Protected branches only.
    pub(crate) only_protected_branches: bool,
    /// Branch regex.
    pub(crate) mirror_branch_regex: Option<String>,
}

impl PushSettings {
    /// The core's push rules for these settings.
    pub(crate) fn rules(&self) -> Result<MirrorRules, PushError> {
        MirrorRules::push(
            self.only_protected_branches,
            self.mirror_branch_regex.as_deref(),
            self.keep_divergent_refs,
            &self.default_branch,
        )
        .map_err(|e| PushError::Filter(e.to_string()))
    }
}

/// The upstream's fingerprint: SHA-256 of the core's canonical listing of its refs.
pub(crate) fn fingerprint(refs: &mirrorfarm_core::sync::Refs) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(mirrorfarm_core::sync::ref_listing(refs).as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An exact pull: the copy follows upstream (used when no pull mirror was configured).
pub(crate) fn exact_pull() -> LeasedPull {
    LeasedPull { overwrite_diverged_branches: true, only_protected_branches: false, mirror_branch_regex: None }
}

/// Refreshes the local copy from upstream under pull-mirror rules; the plan says what moved and
/// what was kept (diverged upstream).
pub(crate) fn pull(
    local: &Git,
    upstream: &Remote,
    rules: &LeasedPull,
    default_branch: &str,
) -> Result<RefUpdatePlan, PushError> {
    pull_with_fingerprint(local, upstream, rules, default_branch).map(|(plan, _)| plan)
}

/// [`pull`], also returning the fingerprint of the upstream refs it fetched.
pub(crate) fn pull_with_fingerprint(
    local: &Git,
    upstream: &Remote,
    rules: &LeasedPull,
    default_branch: &str,
) -> Result<(RefUpdatePlan, String), PushError> {
    let rules = MirrorRules::pull(
        rules.only_protected_branches,
        rules.mirror_branch_regex.as_deref(),
        rules.overwrite_diverged_branches,
        default_branch,
    )
    .map_err(|e| PushError::Filter(e.to_string()))?;
    local.ensure_bare()?;
    local.fetch_staged(upstream)?;
    let staged = local.staged_refs()?;
    let current = local.local_refs()?;
    let plan = plan_push(&staged, &current, &rules, &mut local.clone())?;
    local.apply(&plan.updates)?;
    info!(
        upstream = upstream.masked(),
        updated = plan.updates.len(),
        held = plan.held.len(),
        unchanged = plan.unchanged,
        "pulled"
    );
    Ok((plan, fingerprint(&staged)))
}

/// Refreshes `local` from `upstream` (if any), then plans the push to `target`. Refs upstream
/// rewrote that the pull rules keep are pushed as the copy has them.
pub(crate) fn plan(
    local: &Git,
    upstream: Option<(&Remote, &LeasedPull)>,
    target: &Remote,
    settings: &PushSettings,
) -> Result<RefUpdatePlan, PushError> {
    let rules = settings.rules()?;
    local.ensure_bare()?;
    if let Some((upstream, pull_rules)) = upstream {
        let pulled = pull(local, upstream, pull_rules, &settings.default_branch)?;
        if let Some(kept) = pulled.pull_divergence_error() {
            warn!(upstream = upstream.masked(), "{kept}");
        }
    }
    let source = local.local_refs()?;
    let target_refs = Git::detached().remote_refs(target)?;
    Ok(plan_push(&source, &target_refs, &rules, &mut local.clone())?)
}

/// Where the refs a push sends are staged locally, so one wildcard refspec per kind replaces
/// thousands of explicit ones (git matches explicit refspecs in quadratic time).
const PUSH_NS: &str = "refs/mirrorfarm/push";

/// Carries out a plan: the default branch first and alone, then everything else in one atomic
/// push of wildcard refspecs over a local staging namespace, deletions alongside.
pub(crate) fn execute(
    local: &Git,
    target: &Remote,
    plan: &RefUpdatePlan,
    cancelled: &dyn Fn() -> bool,
) -> Result<UpdateOutcome, PushError> {
    let (first, rest) =
        plan.updates.split_at(usize::from(plan.updates.first().is_some_and(|u| u.name.starts_with("refs/heads/"))));
    let first_specs: Vec<String> = first.iter().filter_map(|u| u.refspec()).collect();
    if !first_specs.is_empty() {
        if cancelled() {
            return Err(PushError::Cancelled);
        }
        local.push(target, &first_specs)?;
    }
    if !rest.is_empty() {
        if cancelled() {
            return Err(PushError::Cancelled);
        }
        // Stage: clear what a previous push left, then one transaction naming every ref to send.
        let stale: Vec<RefUpdate> = local
            .refs_under(PUSH_NS)?
            .into_iter()
            .map(|(name, oid)| RefUpdate {
                name,
                old: Some(oid),
                new: None,
                action: RefAction::Delete,
                rule: "scratch",
            })
            .collect();
        local.apply(&stale)?;
        let mut staged = Vec::new();
        let mut specs = Vec::new();
        for u in rest {
            match (u.action, u.new) {
                (RefAction::Force, Some(new)) => staged.push(stage(&format!("{PUSH_NS}/force/{}", u.name), new)),
                (_, Some(new)) => staged.push(stage(&format!("{PUSH_NS}/ff/{}", u.name), new)),
                (_, None) => specs.push(format!(":{}", u.name)),
            }
        }
        local.apply(&staged)?;
        for ns in ["heads", "tags"] {
            specs.push(format!("+{PUSH_NS}/force/refs/{ns}/*:refs/{ns}/*"));
            specs.push(format!("{PUSH_NS}/ff/refs/{ns}/*:refs/{ns}/*"));
        }
        let pushed = local.push(target, &specs);
        let cleanup: Vec<RefUpdate> =
            staged.into_iter().map(|u| RefUpdate { old: u.new, new: None, action: RefAction::Delete, ..u }).collect();
        local.apply(&cleanup)?;
        pushed?;
    }
    info!(
        target = target.masked(),
        pushed = plan.updates.len(),
        held = plan.held.len(),
        unchanged = plan.unchanged,
        "push complete"
    );
    Ok(match plan.divergence_error() {
        Some(message) => UpdateOutcome::Diverged(message),
        None => UpdateOutcome::Pushed,
    })
}

/// A ref creation in the local staging namespace.
fn stage(name: &str, oid: gix_hash::ObjectId) -> RefUpdate {
    RefUpdate { name: name.to_owned(), old: None, new: Some(oid), action: RefAction::Create, rule: "staged for push" }
}
