//! Mirror updates. A pull refreshes the node's local copy from upstream under the repository's
//! pull-mirror rules; a push compares the copy with the target, lets the core plan, and pushes
//! only what changed — the default branch first, then the rest in one atomic push. What the node
//! learned (the copy's and each target's refs) is kept in [`crate::records`], so an unchanged
//! upstream costs one listing and nothing more.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mirrorfarm_core::mirrors::UpdateOutcome;
use mirrorfarm_core::nodes::{LeasedMirror, LeasedPull, LeasedRepository};
use mirrorfarm_core::sync::{MirrorRules, RefAction, RefUpdate, RefUpdatePlan, Refs, plan_push};
use tracing::{info, warn};

use crate::git::{Git, GitError, Remote, STAGING};
use crate::records::{PulledRecord, TargetRecord, fingerprint};

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
    /// The job cannot run as given (the message says why).
    #[error("{0}")]
    Unrunnable(String),
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
    /// The source's protected branch names and patterns (none: its default branch).
    pub(crate) protected_branches: Vec<String>,
}

impl PushSettings {
    /// A registered push mirror's settings, as the edge hands them out with its repository.
    pub(crate) fn of(mirror: &LeasedMirror, repository: &LeasedRepository) -> Self {
        Self {
            default_branch: repository.default_branch.clone(),
            protected_branches: repository.protected_branches.clone(),
            keep_divergent_refs: mirror.keep_divergent_refs,
            only_protected_branches: mirror.only_protected_branches,
            mirror_branch_regex: mirror.mirror_branch_regex.clone(),
        }
    }

    /// The core's push rules for these settings.
    pub(crate) fn rules(&self) -> Result<MirrorRules, PushError> {
        MirrorRules::push(
            self.only_protected_branches,
            self.mirror_branch_regex.as_deref(),
            self.keep_divergent_refs,
            &self.default_branch,
        )
        .map(|rules| rules.with_protected(&self.protected_branches))
        .map_err(|e| PushError::Filter(e.to_string()))
    }
}

/// Up to this many changed refs are fetched by name (upstream then advertises only those);
/// beyond, everything is fetched by wildcard.
const FETCH_BY_NAME_LIMIT: usize = 500;

/// An exact pull: the copy follows upstream (used when no pull mirror was configured).
pub(crate) fn exact_pull() -> LeasedPull {
    LeasedPull { overwrite_diverged_branches: true, only_protected_branches: false, mirror_branch_regex: None }
}

/// What a pull did and left.
pub(crate) struct Pulled {
    /// What moved in the copy, and what was kept (diverged upstream).
    pub(crate) plan: RefUpdatePlan,
    /// The copy's branches and tags afterwards.
    pub(crate) refs: Refs,
    /// The fingerprint of upstream's branches and tags, for polls to compare with.
    pub(crate) fingerprint: String,
}

/// Refreshes the local copy from upstream under pull-mirror rules.
///
/// Upstream is listed first (one `ls-remote`); if it lists what the last pull left, the copy is
/// current and nothing else runs. Otherwise the core plans from the listing and only the refs that
/// differ are fetched; deletions happen only after the fetch completed. A copy that overwrites
/// takes the fetched refs straight into place; one that keeps diverged refs fetches into a staging
/// namespace first, so the plan can see both sides' commits. A missing exact copy is cloned.
pub(crate) fn pull(
    local: &Git,
    upstream: &Remote,
    pull_rules: &LeasedPull,
    default_branch: &str,
    protected: &[String],
) -> Result<Pulled, PushError> {
    let rules = pull_rules_for(pull_rules, default_branch, protected)?;
    let record = PulledRecord::of(local);
    if !local.exists() && *pull_rules == exact_pull() {
        local.clone_from(upstream)?;
        let refs = local.local_refs()?;
        record.save(&refs)?;
        let plan = plan_push(&refs, &Refs::new(), &rules, &mut local.clone())?;
        info!(upstream = upstream.masked(), created = plan.updates.len(), "cloned");
        return Ok(Pulled { plan, fingerprint: fingerprint(&refs), refs });
    }
    local.ensure_bare()?;
    let listing = Git::detached().remote_refs(upstream)?;
    let upstream_fingerprint = fingerprint(&listing);
    let mut refs = match record.load() {
        Some(recorded) if recorded.iter().eq(listing.iter().filter(|(name, _)| rules.mirrors(name))) => {
            info!(upstream = upstream.masked(), unchanged = recorded.len(), "copy is current");
            let plan = RefUpdatePlan { unchanged: recorded.len(), ..RefUpdatePlan::default() };
            return Ok(Pulled { plan, refs: recorded, fingerprint: upstream_fingerprint });
        }
        Some(recorded) => recorded,
        None => local.local_refs()?,
    };
    record.forget()?;
    let plan = if pull_rules.overwrite_diverged_branches {
        pull_into_place(local, upstream, &listing, &mut refs, &rules, *pull_rules == exact_pull())?
    } else {
        pull_through_staging(local, upstream, listing, &mut refs, &rules)?
    };
    record.save(&refs)?;
    info!(
        upstream = upstream.masked(),
        updated = plan.updates.len(),
        held = plan.held.len(),
        unchanged = plan.unchanged,
        "pulled"
    );
    Ok(Pulled { plan, refs, fingerprint: upstream_fingerprint })
}

/// A pull of changes upstream announced (a push webhook): when the copy follows upstream
/// exactly and its last pull is on record, one `git fetch --prune` of every branch and tag does
/// it. Listing upstream first, as [`pull`] does, would only confirm what the webhook said, at the
/// cost of a round trip to upstream; the fetch's own report says what moved. Any other copy is
/// pulled by [`pull`].
pub(crate) fn pull_announced(
    local: &Git,
    upstream: &Remote,
    pull_rules: &LeasedPull,
    default_branch: &str,
    protected: &[String],
) -> Result<Pulled, PushError> {
    let record = PulledRecord::of(local);
    let recorded = match record.load() {
        Some(recorded) if *pull_rules == exact_pull() && local.exists() => recorded,
        _ => return pull(local, upstream, pull_rules, default_branch, protected),
    };
    let rules = pull_rules_for(pull_rules, default_branch, protected)?;
    record.forget()?;
    let mut refs = recorded.clone();
    for (name, new) in local.fetch_all_into_place(upstream)? {
        match new {
            Some(oid) => refs.insert(name, oid),
            None => refs.remove(&name),
        };
    }
    record.save(&refs)?;
    // Everything differing is taken (the rules overwrite), so the plan needs no ancestry.
    let plan = plan_push(&refs, &recorded, &rules, &mut local.clone())?;
    info!(
        upstream = upstream.masked(),
        updated = plan.updates.len(),
        unchanged = plan.unchanged,
        "pulled as announced"
    );
    Ok(Pulled { plan, fingerprint: fingerprint(&refs), refs })
}

/// An overwriting pull: the plan needs no ancestry (every difference is taken), so it is made from
/// the listing, the moved refs are fetched straight into place, then deletions applied.
/// `refs` becomes the copy's refs afterwards, as the fetch reports them.
fn pull_into_place(
    local: &Git,
    upstream: &Remote,
    listing: &Refs,
    refs: &mut Refs,
    rules: &MirrorRules,
    takes_everything: bool,
) -> Result<RefUpdatePlan, PushError> {
    let plan = plan_push(listing, refs, rules, &mut local.clone())?;
    let (moved, deleted): (Vec<&RefUpdate>, Vec<&RefUpdate>) = plan.updates.iter().partition(|u| u.new.is_some());
    if !moved.is_empty() {
        let names: Vec<&str> = moved.iter().map(|u| u.name.as_str()).collect();
        // Many changes: by wildcard, unless a branch filter must keep some refs out.
        let fetched = if names.len() <= FETCH_BY_NAME_LIMIT || !takes_everything {
            local.fetch_into_place(upstream, &names)?
        } else {
            local.fetch_into_place(upstream, &["refs/heads/*", "refs/tags/*"])?
        };
        refs.extend(fetched);
    }
    let deleted: Vec<RefUpdate> = deleted.into_iter().cloned().collect();
    local.apply(&deleted)?;
    for u in &deleted {
        refs.remove(&u.name);
    }
    Ok(plan)
}

/// A pull that keeps diverged refs: the differing refs are fetched into the staging namespace
/// first, so the plan can ask which upstream tips descend from the copy's.
fn pull_through_staging(
    local: &Git,
    upstream: &Remote,
    listing: Refs,
    refs: &mut Refs,
    rules: &MirrorRules,
) -> Result<RefUpdatePlan, PushError> {
    let plan = plan_staged(local, upstream, listing, refs, rules)?;
    local.apply(&plan.updates)?;
    clear_staging(local)?;
    plan.apply_to(refs);
    Ok(plan)
}

/// Fetches the refs upstream lists differently from `refs` into the staging namespace (so their
/// objects are here to answer ancestry questions) and plans the pull. The copy's refs do not move;
/// the staging namespace is left for the caller to apply from and clear.
fn plan_staged(
    local: &Git,
    upstream: &Remote,
    listing: Refs,
    refs: &Refs,
    rules: &MirrorRules,
) -> Result<RefUpdatePlan, PushError> {
    let changed: Vec<&str> = listing
        .iter()
        .filter(|(name, oid)| rules.mirrors(name) && refs.get(*name) != Some(*oid))
        .map(|(name, _)| name.as_str())
        .collect();
    clear_staging(local)?;
    let fetched = if changed.is_empty() {
        listing
    } else if changed.len() <= FETCH_BY_NAME_LIMIT {
        local.fetch_staged_names(upstream, &changed)?;
        let mut view = listing;
        view.extend(local.staged_refs()?);
        view
    } else {
        local.fetch_staged(upstream)?;
        local.staged_refs()?
    };
    Ok(plan_push(&fetched, refs, rules, &mut local.clone())?)
}

/// What [`pull`] would do now, without moving any of the copy's refs (a dry run): changed refs'
/// objects are fetched into the staging namespace, which is cleared again. The returned refs are
/// the copy as the pull would leave it. Without a copy yet, everything upstream lists (and the
/// rules take) would be created.
pub(crate) fn preview_pull(
    local: &Git,
    upstream: &Remote,
    pull_rules: &LeasedPull,
    default_branch: &str,
    protected: &[String],
) -> Result<Pulled, PushError> {
    // A dry run tells fast-forwards from overwrites even where the pull itself need not ask.
    let rules = pull_rules_for(pull_rules, default_branch, protected)?.checking_fast_forwards();
    let listing = Git::detached().remote_refs(upstream)?;
    let fingerprint = fingerprint(&listing);
    let mut refs = if local.exists() {
        PulledRecord::of(local).load().map_or_else(|| local.local_refs(), Ok)?
    } else {
        Refs::new()
    };
    let plan = if local.exists() {
        let plan = plan_staged(local, upstream, listing, &refs, &rules)?;
        clear_staging(local)?;
        plan
    } else {
        // Only creations: no ancestry is asked, so no repository is needed.
        plan_push(&listing, &refs, &rules, &mut local.clone())?
    };
    plan.apply_to(&mut refs);
    Ok(Pulled { plan, refs, fingerprint })
}

/// The copy as it is, without asking upstream, if it holds exactly what upstream held at the
/// edge's last recorded pull (`recorded`: that pull's fingerprint). A job that follows a pull (a
/// push or fork sync the pull queued, or one queued with it by a webhook) takes the copy so: the
/// pull just listed upstream, and if upstream moved since, its webhook or the next poll queues
/// another pull, and these jobs again. `None`: pull as usual.
pub(crate) fn trusted_copy(local: &Git, recorded: &str) -> Option<Pulled> {
    let refs = PulledRecord::of(local).load()?;
    (fingerprint(&refs) == recorded).then(|| {
        info!(unchanged = refs.len(), "copy matches the last recorded pull; upstream not listed again");
        let plan = RefUpdatePlan { unchanged: refs.len(), ..RefUpdatePlan::default() };
        Pulled { plan, refs, fingerprint: recorded.to_owned() }
    })
}

/// The core's rules for a repository's pull-mirror settings and protected branches.
fn pull_rules_for(
    pull_rules: &LeasedPull,
    default_branch: &str,
    protected: &[String],
) -> Result<MirrorRules, PushError> {
    MirrorRules::pull(
        pull_rules.only_protected_branches,
        pull_rules.mirror_branch_regex.as_deref(),
        pull_rules.overwrite_diverged_branches,
        default_branch,
    )
    .map(|rules| rules.with_protected(protected))
    .map_err(|e| PushError::Filter(e.to_string()))
}

/// Deletes whatever the staging namespace holds.
fn clear_staging(local: &Git) -> Result<(), PushError> {
    let stale = scratch_deletions(local.refs_under(STAGING)?);
    Ok(local.apply(&stale)?)
}

fn scratch_deletions(refs: Refs) -> Vec<RefUpdate> {
    refs.into_iter()
        .map(|(name, oid)| RefUpdate { name, old: Some(oid), new: None, action: RefAction::Delete, rule: "scratch" })
        .collect()
}

/// Plans against a fresh listing of the target (dry runs: every ref's action, fast-forwards told
/// apart from forced updates).
pub(crate) fn plan(
    local: &Git,
    source: &Refs,
    target: &Remote,
    settings: &PushSettings,
) -> Result<RefUpdatePlan, PushError> {
    let rules = settings.rules()?.checking_fast_forwards();
    let target_refs = Git::detached().remote_refs(target)?;
    Ok(plan_push(source, &target_refs, &rules, &mut local.clone())?)
}

/// Brings `target` up to date with `source` (the copy's refs): plans, pushes, and records what the
/// target has afterwards.
///
/// The plan starts from the recorded target refs when they were verified within `recheck`. Its
/// push cannot lose anything the record missed: fast-forwards and creations go without force (git
/// refuses them if the target moved elsewhere), deletions carry a lease, and forced updates are
/// what a fresh plan would force too. If git refuses, the target is listed and planned again.
pub(crate) fn push_to(
    local: &Git,
    source: &Refs,
    target: &Remote,
    settings: &PushSettings,
    recheck: Duration,
    gate: &dyn Fn(&RefUpdatePlan) -> Vec<String>,
    cancelled: &dyn Fn() -> bool,
) -> Result<(RefUpdatePlan, UpdateOutcome), PushError> {
    let rules = settings.rules()?;
    let record = TargetRecord::of(local, target);
    // The plan less what the gate (pre hooks) refuses: those refs are not pushed.
    let gated = |mut plan: RefUpdatePlan| {
        if !plan.updates.is_empty() {
            let refused = gate(&plan);
            plan.updates.retain(|u| !refused.contains(&u.name));
        }
        plan
    };
    if let Some(recorded) = record.load(recheck) {
        let plan = gated(plan_push(source, &recorded.refs, &rules, &mut local.clone())?);
        if plan.updates.is_empty() {
            info!(target = target.masked(), held = plan.held.len(), unchanged = plan.unchanged, "target is current");
            let outcome = outcome(&plan);
            return Ok((plan, outcome));
        }
        record.forget()?;
        match execute(local, target, &plan, source, settings, Leases::Recorded, cancelled) {
            Ok(outcome) => {
                record.save(&recorded.refs, &plan, Some(recorded.verified_at))?;
                return Ok((plan, outcome));
            }
            Err(PushError::Cancelled) => return Err(PushError::Cancelled),
            Err(e) => warn!(
                target = target.masked(),
                error = %e,
                "push planned from the recorded target refs was refused; listing the target"
            ),
        }
    }
    record.forget()?;
    let listed_at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let listed = Git::detached().remote_refs(target)?;
    let plan = gated(plan_push(source, &listed, &rules, &mut local.clone())?);
    let outcome = execute(local, target, &plan, source, settings, Leases::None, cancelled)?;
    record.save(&listed, &plan, Some(listed_at))?;
    Ok((plan, outcome))
}

/// Whether a push checks each ref's current value on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leases {
    /// The plan came from a fresh listing: no checks.
    None,
    /// The plan came from the record: each deletion must still find the value it shows.
    Recorded,
}

/// Where the refs a push sends are staged locally, so one wildcard refspec per kind replaces
/// thousands of explicit ones.
const PUSH_NS: &str = "refs/mirrorfarm/push";

/// The update's outcome from its plan: diverged refs kept make it fail with GitLab's message.
fn outcome(plan: &RefUpdatePlan) -> UpdateOutcome {
    match plan.divergence_error() {
        Some(message) => UpdateOutcome::Diverged(message),
        None => UpdateOutcome::Pushed,
    }
}

/// Carries out a plan: the default branch first and alone (so a rejected ref elsewhere cannot
/// hold back the main line), then everything else in one atomic push of wildcard refspecs:
/// straight from `refs/heads` and `refs/tags` when the plan sends every branch and tag that
/// differs (git skips the equal ones), else over a local namespace holding just the refs to send.
/// (git matches each *named* refspec against every local ref: a hundred names cost seconds
/// against 100k refs; a wildcard does not.)
fn execute(
    local: &Git,
    target: &Remote,
    plan: &RefUpdatePlan,
    source: &Refs,
    settings: &PushSettings,
    leases: Leases,
    cancelled: &dyn Fn() -> bool,
) -> Result<UpdateOutcome, PushError> {
    let default_ref = format!("refs/heads/{}", settings.default_branch);
    let (first, rest) = plan.updates.split_at(usize::from(plan.updates.first().is_some_and(|u| u.name == default_ref)));
    if let Some(spec) = first.first().and_then(RefUpdate::refspec) {
        if cancelled() {
            return Err(PushError::Cancelled);
        }
        local.push(target, &[spec], &[])?;
    }
    if !rest.is_empty() {
        if cancelled() {
            return Err(PushError::Cancelled);
        }
        let deletions: Vec<&RefUpdate> = rest.iter().filter(|u| u.new.is_none()).collect();
        let mut specs: Vec<String> = deletions.iter().filter_map(|u| u.refspec()).collect();
        let lease_list: Vec<String> = match leases {
            Leases::None => Vec::new(),
            Leases::Recorded => deletions.iter().filter_map(|u| u.old.map(|old| format!("{}:{old}", u.name))).collect(),
        };
        if sends_every_difference(plan, source) {
            let force = if rest.iter().any(|u| u.action == RefAction::Force) { "+" } else { "" };
            specs.extend(["heads", "tags"].iter().map(|ns| format!("{force}refs/{ns}/*:refs/{ns}/*")));
            local.push(target, &specs, &lease_list)?;
        } else {
            push_through_namespace(local, target, rest, specs, &lease_list)?;
        }
    }
    info!(
        target = target.masked(),
        pushed = plan.updates.len(),
        held = plan.held.len(),
        unchanged = plan.unchanged,
        "push complete"
    );
    Ok(outcome(plan))
}

/// Whether pushing every local branch and tag by wildcard sends exactly the plan: each source ref
/// is either unchanged on the target or updated to its own value (none filtered out or held).
fn sends_every_difference(plan: &RefUpdatePlan, source: &Refs) -> bool {
    source.len() == plan.unchanged + plan.updates.iter().filter(|u| u.new.is_some()).count()
}

/// Stages the refs to send under [`PUSH_NS`] — forced ones apart — and pushes them by wildcard,
/// with `specs` (the deletions) alongside.
pub(crate) fn push_through_namespace(
    local: &Git,
    target: &Remote,
    rest: &[RefUpdate],
    mut specs: Vec<String>,
    leases: &[String],
) -> Result<(), PushError> {
    // Clear what a previous push left, then one transaction naming every ref to send.
    local.apply(&scratch_deletions(local.refs_under(PUSH_NS)?))?;
    let staged: Vec<RefUpdate> = rest
        .iter()
        .filter_map(|u| {
            let kind = if u.action == RefAction::Force { "force" } else { "ff" };
            u.new.map(|new| stage(&format!("{PUSH_NS}/{kind}/{}", u.name), new))
        })
        .collect();
    local.apply(&staged)?;
    for ns in ["heads", "tags"] {
        specs.push(format!("+{PUSH_NS}/force/refs/{ns}/*:refs/{ns}/*"));
        specs.push(format!("{PUSH_NS}/ff/refs/{ns}/*:refs/{ns}/*"));
    }
    let pushed = local.push(target, &specs, leases);
    let cleanup: Vec<RefUpdate> =
        staged.into_iter().map(|u| RefUpdate { old: u.new, new: None, action: RefAction::Delete, ..u }).collect();
    local.apply(&cleanup)?;
    Ok(pushed?)
}

/// A ref creation in the local staging namespace.
fn stage(name: &str, oid: gix_hash::ObjectId) -> RefUpdate {
    RefUpdate { name: name.to_owned(), old: None, new: Some(oid), action: RefAction::Create, rule: "staged for push" }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::testing::git;

    fn tip(dir: &Path, name: &str) -> gix_hash::ObjectId {
        let out = std::process::Command::new("git").arg("-C").arg(dir).args(["rev-parse", name]).output().expect("git");
        gix_hash::ObjectId::from_hex(String::from_utf8_lossy(&out.stdout).trim().as_bytes()).expect("an oid")
    }

    #[test]
    fn an_announced_pull_fetches_once_and_leaves_the_copy_as_upstream_lists_it() {
        let root = std::env::temp_dir().join(format!("mirrorfarm-announced-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("scratch");
        let up = root.join("up");
        git(&root, &["init", "-q", "-b", "main", "up"]);
        git(&up, &["commit", "-q", "--allow-empty", "-m", "one"]);
        git(&up, &["branch", "gone"]);
        git(&up, &["branch", "stays"]);
        git(&up, &["tag", "v1"]);
        let upstream = Remote::parse(up.to_str().expect("utf8")).expect("a path");
        let local = Git::in_dir(root.join("copy.git"));
        // The first pull clones and records; without a record the announced pull is a full one.
        let first = pull_announced(&local, &upstream, &exact_pull(), "main", &[]).expect("clones");
        assert_eq!(first.refs.len(), 4);

        // Upstream moves main, deletes a branch, adds a tag and an annotated one.
        git(&up, &["commit", "-q", "--allow-empty", "-m", "two"]);
        git(&up, &["branch", "-D", "gone"]);
        git(&up, &["tag", "v2"]);
        git(&up, &["tag", "-a", "-m", "annotated", "v3"]);
        let pulled = pull_announced(&local, &upstream, &exact_pull(), "main", &[]).expect("pulls");

        let listed = Git::detached().remote_refs(&upstream).expect("lists");
        assert_eq!(pulled.refs, listed, "the copy is what upstream lists");
        assert_eq!(local.local_refs().expect("reads"), listed, "and so are its refs on disk");
        assert_eq!(pulled.fingerprint, fingerprint(&listed), "the fingerprint a poll compares with");
        let mut moved: Vec<(&str, Option<gix_hash::ObjectId>)> =
            pulled.plan.updates.iter().map(|u| (u.name.as_str(), u.new)).collect();
        moved.sort();
        assert_eq!(
            moved,
            vec![
                ("refs/heads/gone", None),
                ("refs/heads/main", Some(tip(&up, "main"))),
                ("refs/tags/v2", Some(tip(&up, "v2"))),
                ("refs/tags/v3", Some(tip(&up, "refs/tags/v3"))),
            ]
        );
        assert_eq!(pulled.plan.unchanged, 2, "stays and v1");
        // The record matches, so a push that follows trusts the copy without listing upstream.
        assert!(trusted_copy(&local, &pulled.fingerprint).is_some());

        // Nothing new: the fetch reports nothing and the copy stays.
        let again = pull_announced(&local, &upstream, &exact_pull(), "main", &[]).expect("pulls");
        assert!(again.plan.updates.is_empty());
        assert_eq!(again.refs, listed);
        let _ = std::fs::remove_dir_all(&root);
    }
}
