//! `sync <repo>` and `plan <repo>`: one registered repository, now, from this node.
//!
//! `sync` asks the edge to queue the repository's syncs (its pull, then every enabled push
//! mirror), then leases and works exactly those jobs here — same leases, reports and status as
//! the daemon — showing a progress line per job on a terminal. `plan` asks the edge what a sync
//! involves and prints every ref's action for the pull and each push mirror, moving nothing.

use std::io::{self, Write};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mirrorfarm_core::mirrors::UpdateOutcome;
use mirrorfarm_core::sync::RefUpdatePlan;

use crate::daemon::{NodeSettings, RepoLocks, copy_of, describe, handle};
use crate::edge::EdgeClient;
use crate::git::Remote;
use crate::push::{self, PushSettings};

/// Syncs one repository through the edge. Fails if any of its updates failed.
pub(crate) fn sync(
    edge: &EdgeClient,
    settings: &NodeSettings,
    repo: &str,
    shutdown: &AtomicBool,
) -> Result<(), String> {
    let (id, queued) = edge.sync_repository(repo).map_err(|e| e.to_string())?;
    let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let overall = bars.add(ProgressBar::new(queued));
    overall.set_style(style("{prefix:.bold} [{bar:24}] {pos}/{len} jobs {elapsed}"));
    overall.set_prefix(repo.to_owned());
    let (mut done, mut failed) = (0u64, 0u64);
    let locks = RepoLocks::default();
    while let Some(job) = edge.lease(settings.lease_seconds, Some(id), 0).map_err(|e| e.to_string())? {
        let what = describe(&job);
        let spinner = bars.insert_before(&overall, ProgressBar::new_spinner());
        spinner.set_style(style("{spinner} {msg} {elapsed}"));
        spinner.set_message(what.clone());
        spinner.enable_steady_tick(Duration::from_millis(120));
        let (outcome, _) = handle(0, edge, settings, shutdown, &locks, &job, None);
        let line = match &outcome {
            // Success: the target now matches (whether or not any ref had to move).
            Some(UpdateOutcome::Pushed) => format!("✓ {what}: in sync"),
            Some(UpdateOutcome::Unchanged) => format!("✓ {what}: upstream unchanged, nothing to do"),
            Some(UpdateOutcome::Diverged(m) | UpdateOutcome::Error(m)) => {
                failed += 1;
                format!("✗ {what}: {}", m.lines().next().unwrap_or_default())
            }
            None => {
                failed += 1;
                format!("✗ {what}: stopped before it finished (given back to the queue)")
            }
        };
        spinner.finish_and_clear();
        say(&bars, &line);
        done += 1;
        overall.inc(1);
        if outcome.is_none() {
            break;
        }
    }
    overall.finish_and_clear();
    // Jobs a running node took first are not counted here; the edge's status has them.
    let others = queued.saturating_sub(done);
    say(
        &bars,
        &format!(
            "{done} job(s) run here, {failed} failed{}",
            if others > 0 { format!(", {others} taken by other nodes") } else { String::new() }
        ),
    );
    if failed > 0 { Err(format!("{failed} update(s) failed")) } else { Ok(()) }
}

/// Prints what a sync of one repository would do, ref by ref, without changing anything
/// (objects of changed upstream refs may be downloaded into the node's copy, no ref moves).
pub(crate) fn plan(edge: &EdgeClient, settings: &NodeSettings, repo: &str) -> Result<(), String> {
    let work = edge.repository_work(repo).map_err(|e| e.to_string())?;
    let r = &work.repository;
    let local = copy_of(settings, r.id);
    let mut out = io::stdout().lock();
    let line = |out: &mut io::StdoutLock<'_>, text: String| writeln!(out, "{text}").map_err(|e| e.to_string());
    let source = match r.upstream_url.as_deref().map(Remote::parse).transpose().map_err(|e| e.to_string())? {
        Some(upstream) if work.pull_enabled => {
            let pulled = push::preview_pull(&local, &upstream, &r.pull, &r.default_branch, &r.protected_branches)
                .map_err(|e| e.to_string())?;
            line(&mut out, format!("pull from {}", upstream.masked()))?;
            print_plan(&mut out, &pulled.plan)?;
            pulled.refs
        }
        _ if local.exists() => {
            line(&mut out, "pull: none (no enabled pull mirror); pushing the copy as it is".into())?;
            local.local_refs().map_err(|e| e.to_string())?
        }
        _ => {
            return line(
                &mut out,
                format!("{}/{}: no upstream and no copy on this node: nothing to push", r.project_key, r.slug),
            );
        }
    };
    for mirror in &work.mirrors {
        // An SSH-key mirror's target is listed with its own key and known hosts (never learned
        // here: a dry run with no known hosts accepts the key but keeps nothing).
        let ssh = mirror.ssh.as_ref().map(|leased| crate::ssh_push::SshSession::open(0, leased)).transpose();
        let ssh = ssh.map_err(|e| e.to_string())?;
        let target = Remote::parse(&mirror.url).map_err(|e| e.to_string())?;
        let target = match &ssh {
            Some(session) => target.with_ssh_command(session.command()),
            None => target,
        };
        line(&mut out, format!("\npush to {}", target.masked()))?;
        if !local.exists() {
            line(
                &mut out,
                "  (no copy on this node yet: the first sync clones the upstream, then plans this push)".into(),
            )?;
            continue;
        }
        match push::plan(&local, &source, &target, &PushSettings::of(mirror, r)) {
            Ok(plan) => print_plan(&mut out, &plan)?,
            Err(e) => line(&mut out, format!("  cannot plan: {e}"))?,
        }
    }
    Ok(())
}

/// One line per ref that would change or be held — action, new value, name, deciding rule —
/// then the totals.
pub(crate) fn print_plan(out: &mut impl Write, plan: &RefUpdatePlan) -> Result<(), String> {
    for u in plan.updates.iter().chain(&plan.held) {
        let to = u.new.map_or("-".to_owned(), |o| o.to_string());
        writeln!(out, "{:<13} {:<40} {}  ({})", u.action.as_str(), to, u.name, u.rule).map_err(|e| e.to_string())?;
    }
    writeln!(out, "{} to update, {} held, {} unchanged", plan.updates.len(), plan.held.len(), plan.unchanged)
        .map_err(|e| e.to_string())
}

fn style(template: &str) -> ProgressStyle {
    // The templates are constants checked by the tests below.
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// A result line: above the bars on a terminal, plain on standard output otherwise.
fn say(bars: &MultiProgress, line: &str) {
    if bars.is_hidden() {
        println!("{line}");
    } else {
        let _ = bars.println(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_templates_are_valid() {
        for t in ["{prefix:.bold} [{bar:24}] {pos}/{len} jobs {elapsed}", "{spinner} {msg} {elapsed}"] {
            assert!(ProgressStyle::with_template(t).is_ok(), "{t}");
        }
    }
}
