//! What a node remembers between runs, kept inside each local copy (`<copy>/mirrorfarm/`), so a
//! sync whose upstream did not move talks to nobody but the upstream.
//!
//! - [`PulledRecord`]: the copy's branches and tags after the last pull. If upstream lists the
//!   same, the copy is current: no fetch, no local listing. (Only the node writes its copies, one
//!   job per repository at a time; the record is dropped before any change and rewritten after.)
//! - [`TargetRecord`]: a target's refs as this node last verified (`ls-remote`) or pushed them,
//!   with the time of the last verification. A push planned from it carries a lease on every ref
//!   it changes, so a target that moved behind the node's back rejects the push and gets listed
//!   and planned again; refs the push does not touch are re-verified once the record is older
//!   than the node's `target_recheck`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mirrorfarm_core::sync::{RefUpdatePlan, Refs, ref_listing};

use crate::git::{Git, GitError, Remote, parse_listing};

/// The SHA-256 of the core's canonical listing of `refs`: equal fingerprints, equal refs.
pub(crate) fn fingerprint(refs: &Refs) -> String {
    hex_sha256(ref_listing(refs).as_bytes())
}

pub(crate) fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn records_dir(local: &Git) -> Option<PathBuf> {
    local.dir().map(|d| d.join("mirrorfarm"))
}

/// Writes beside the destination and renames, so a reader never sees half a record.
fn write_atomically(path: &PathBuf, contents: &str) -> Result<(), GitError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let partial = path.with_extension("partial");
    std::fs::write(&partial, contents)?;
    std::fs::rename(&partial, path)?;
    Ok(())
}

/// The copy's refs after its last pull.
pub(crate) struct PulledRecord {
    path: Option<PathBuf>,
}

impl PulledRecord {
    /// The record of `local`.
    pub(crate) fn of(local: &Git) -> Self {
        Self { path: records_dir(local).map(|d| d.join("pulled.refs")) }
    }

    /// The refs recorded, if any.
    pub(crate) fn load(&self) -> Option<Refs> {
        parse_listing(&std::fs::read(self.path.as_ref()?).ok()?, ' ').ok()
    }

    /// Records the copy's refs after a pull.
    pub(crate) fn save(&self, refs: &Refs) -> Result<(), GitError> {
        match &self.path {
            Some(path) => write_atomically(path, &ref_listing(refs)),
            None => Ok(()),
        }
    }

    /// Forgets it (before anything changes the copy, so a failure midway leaves no false record).
    pub(crate) fn forget(&self) -> Result<(), GitError> {
        remove(self.path.as_ref())
    }
}

fn remove(path: Option<&PathBuf>) -> Result<(), GitError> {
    match path.map(std::fs::remove_file) {
        Some(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// The origin's refs as the last sync of one fork saw them (what that sync remembered), kept in
/// the origin's copy: it tells a tag the fork moved from one the origin moved, and a branch the
/// origin deleted from one only the fork ever had. A node without it syncs conservatively.
pub(crate) struct ForkRecord {
    path: Option<PathBuf>,
}

impl ForkRecord {
    /// The record `origin_copy` keeps for fork `fork_id`.
    pub(crate) fn of(origin_copy: &Git, fork_id: i64) -> Self {
        Self { path: records_dir(origin_copy).map(|d| d.join("forks").join(format!("{fork_id}.refs"))) }
    }

    /// The refs recorded, if any.
    pub(crate) fn load(&self) -> Option<Refs> {
        parse_listing(&std::fs::read(self.path.as_ref()?).ok()?, ' ').ok()
    }

    /// Records what a sync remembered.
    pub(crate) fn save(&self, refs: &Refs) -> Result<(), GitError> {
        match &self.path {
            Some(path) => write_atomically(path, &ref_listing(refs)),
            None => Ok(()),
        }
    }
}

/// A target's refs as last verified or pushed by this node.
pub(crate) struct TargetRecord {
    path: Option<PathBuf>,
}

/// A loaded [`TargetRecord`].
pub(crate) struct RecordedTarget {
    /// The refs.
    pub(crate) refs: Refs,
    /// When they were last listed from the target itself (seconds since the epoch).
    pub(crate) verified_at: u64,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl TargetRecord {
    /// The record `local` keeps of `target` (named by a digest of its credential-free URL).
    pub(crate) fn of(local: &Git, target: &Remote) -> Self {
        let name = hex_sha256(target.url().as_bytes());
        Self { path: records_dir(local).map(|d| d.join("targets").join(format!("{}.refs", &name[..32]))) }
    }

    /// The recorded refs, if verified no longer than `max_age` ago (never, for zero).
    pub(crate) fn load(&self, max_age: Duration) -> Option<RecordedTarget> {
        if max_age.is_zero() {
            return None;
        }
        let text = std::fs::read(self.path.as_ref()?).ok()?;
        let newline = text.iter().position(|b| *b == b'\n')?;
        let verified_at: u64 = std::str::from_utf8(&text[..newline]).ok()?.strip_prefix("# verified ")?.parse().ok()?;
        if now_secs().saturating_sub(verified_at) > max_age.as_secs() {
            return None;
        }
        let refs = parse_listing(&text[newline + 1..], ' ').ok()?;
        Some(RecordedTarget { refs, verified_at })
    }

    /// Records what the target has after `plan` was pushed onto `before`; `verified_at` is when
    /// `before` was last listed from the target (now, for a fresh listing).
    pub(crate) fn save(&self, before: &Refs, plan: &RefUpdatePlan, verified_at: Option<u64>) -> Result<(), GitError> {
        let Some(path) = &self.path else { return Ok(()) };
        let mut after = before.clone();
        plan.apply_to(&mut after);
        let verified_at = verified_at.unwrap_or_else(now_secs);
        write_atomically(path, &format!("# verified {verified_at}\n{}", ref_listing(&after)))
    }

    /// Forgets it: the target's state is unknown (a push failed partway, or was refused).
    pub(crate) fn forget(&self) -> Result<(), GitError> {
        remove(self.path.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use gix_hash::ObjectId;
    use mirrorfarm_core::sync::{RefAction, RefUpdate};

    use super::*;

    fn oid(n: u8) -> ObjectId {
        ObjectId::from_bytes_or_panic(&[n; 20])
    }

    #[test]
    fn target_records_apply_the_plan_and_expire() {
        let dir = std::env::temp_dir().join(format!("mirrorfarm-records-{}", std::process::id()));
        let local = Git::in_dir(&dir);
        let record = TargetRecord::of(&local, &Remote::parse("https://u:secret@example.com/r.git").expect("valid"));
        assert!(record.load(Duration::from_secs(60)).is_none());
        let before: Refs = [("refs/heads/main".to_owned(), oid(1)), ("refs/heads/old".to_owned(), oid(2))].into();
        let update =
            |name: &str, new| RefUpdate { name: name.into(), old: None, new, action: RefAction::Create, rule: "" };
        let plan = RefUpdatePlan {
            updates: vec![update("refs/heads/main", Some(oid(3))), update("refs/heads/old", None)],
            ..RefUpdatePlan::default()
        };
        record.save(&before, &plan, Some(now_secs() - 30)).expect("saves");
        let loaded = record.load(Duration::from_secs(60)).expect("fresh");
        assert_eq!(loaded.refs, [("refs/heads/main".to_owned(), oid(3))].into());
        assert!(record.load(Duration::from_secs(10)).is_none(), "older than max age");
        // The record's name holds no credential.
        let files: Vec<_> = std::fs::read_dir(dir.join("mirrorfarm/targets")).expect("dir").collect();
        assert_eq!(files.len(), 1);
        record.forget().expect("forgets");
        assert!(record.load(Duration::from_secs(60)).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
