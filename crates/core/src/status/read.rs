//! Reading a [`RepositoryStatus`] out of already-parsed JSON, without serde.
//!
//! The browser parses JSON natively (`JSON.parse`); reading the status from the resulting object
//! through this module keeps serde and a JSON parser out of the widget, which measured about
//! 25 KB gzip of its wasm. The field names are the serde ones, and a round-trip test checks this
//! reader against the serde serialization, so the wire type is still defined once.

use super::{MirrorStatus, RepositoryName, RepositoryStatus};
use crate::forks::{RefSyncState, RefSyncStatus, RejectedRef};
use crate::mirrors::{StatusSummary, UpdateStatus};
use crate::nodes::NodeDto;
use crate::queue::{Job, JobKind, JobReason, JobState};

/// A parsed JSON value, as whichever side parsed it holds it.
pub trait JsonValue: Sized {
    /// The member `name` of an object; `None` if absent or `null`.
    fn member(&self, name: &str) -> Option<Self>;
    /// The value as a string.
    fn string(&self) -> Option<String>;
    /// The value as a number.
    fn number(&self) -> Option<f64>;
    /// The value as a boolean.
    fn boolean(&self) -> Option<bool>;
    /// The elements of an array.
    fn elements(&self) -> Option<Vec<Self>>;
}

/// A field that is missing or has the wrong type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadError(pub &'static str);

impl ReadError {
    /// The error in words, without `core::fmt` (the widget shows it).
    pub fn message(self) -> String {
        let mut text = "the status has no valid `".to_owned();
        text.push_str(self.0);
        text.push('`');
        text
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for ReadError {}

type Result<T> = std::result::Result<T, ReadError>;

/// Reads typed members of one object, naming the field in errors.
struct Object<'a, V>(&'a V);

impl<V: JsonValue> Object<'_, V> {
    fn get(&self, name: &'static str) -> Result<V> {
        self.0.member(name).ok_or(ReadError(name))
    }

    fn string(&self, name: &'static str) -> Result<String> {
        self.get(name)?.string().ok_or(ReadError(name))
    }

    fn optional_string(&self, name: &'static str) -> Result<Option<String>> {
        self.0.member(name).map(|v| v.string().ok_or(ReadError(name))).transpose()
    }

    fn integer(&self, name: &'static str) -> Result<i64> {
        whole(self.get(name)?.number()).ok_or(ReadError(name))
    }

    fn optional_integer(&self, name: &'static str) -> Result<Option<i64>> {
        self.0.member(name).map(|v| whole(v.number()).ok_or(ReadError(name))).transpose()
    }

    fn count(&self, name: &'static str) -> Result<usize> {
        usize::try_from(self.integer(name)?).map_err(|_| ReadError(name))
    }

    fn boolean(&self, name: &'static str) -> Result<bool> {
        self.get(name)?.boolean().ok_or(ReadError(name))
    }

    fn list<T>(&self, name: &'static str, item: impl Fn(&V) -> Result<T>) -> Result<Vec<T>> {
        // A plain loop: `collect` into a `Result` costs the widget an iterator adapter per type.
        let elements = self.get(name)?.elements().ok_or(ReadError(name))?;
        let mut items = Vec::with_capacity(elements.len());
        for element in &elements {
            items.push(item(element)?);
        }
        Ok(items)
    }

    fn named<T>(&self, name: &'static str, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
        parse(&self.string(name)?).ok_or(ReadError(name))
    }
}

/// A JSON number that is a whole number in `i64`'s range (epoch ms, ids, counts).
fn whole(n: Option<f64>) -> Option<i64> {
    n.filter(|n| n.fract() == 0.0 && n.abs() < 9.0e15).map(|n| n as i64)
}

impl RepositoryStatus {
    /// Reads the status from a parsed `GET …/status` body.
    pub fn read<V: JsonValue>(value: &V) -> Result<Self> {
        let o = Object(value);
        let repository = o.get("repository")?;
        let r = Object(&repository);
        let summary = o.get("summary")?;
        let s = Object(&summary);
        Ok(Self {
            repository: RepositoryName {
                id: r.integer("id")?,
                project_key: r.string("projectKey")?,
                slug: r.string("slug")?,
                name: r.string("name")?,
            },
            summary: StatusSummary {
                total: s.count("total")?,
                failing: s.count("failing")?,
                syncing: s.count("syncing")?,
                never_run: s.count("neverRun")?,
                stale: s.boolean("stale")?,
            },
            remote_mirrors: o.list("remoteMirrors", read_mirror)?,
            pull_mirror: value.member("pullMirror").map(|m| read_mirror(&m)).transpose()?,
            jobs: o.list("jobs", read_job)?,
            nodes: o.list("nodes", read_node)?,
            fork: value.member("fork").map(|f| read_fork(&f)).transpose()?,
            farm: value.member("farm").map(|f| read_farm(&f)).transpose()?,
            banner: o.optional_string("banner")?,
        })
    }
}

fn read_farm<V: JsonValue>(value: &V) -> Result<crate::status::FarmStatus> {
    let f = Object(value);
    Ok(crate::status::FarmStatus {
        upstream: f.string("upstream")?,
        status: f.string("status")?,
        content_hash: f.optional_string("contentHash")?,
        upstream_content_hash: f.optional_string("upstreamContentHash")?,
        last_sync: f.optional_integer("lastSync")?,
    })
}

/// Read list by list, as sent (already sorted): sorting again would cost the widget a sort's code.
fn read_fork<V: JsonValue>(value: &V) -> Result<RefSyncStatus> {
    let f = Object(value);
    Ok(RefSyncStatus {
        available: f.boolean("available")?,
        enabled: f.boolean("enabled")?,
        last_sync: f.optional_integer("lastSync")?,
        ahead_refs: f.list("aheadRefs", read_rejected)?,
        diverged_refs: f.list("divergedRefs", read_rejected)?,
        orphaned_refs: f.list("orphanedRefs", read_rejected)?,
        unavailable_reason: f.optional_string("unavailableReason")?,
        last_error: f.optional_string("lastError")?,
    })
}

fn read_rejected<V: JsonValue>(value: &V) -> Result<RejectedRef> {
    let r = Object(value);
    Ok(RejectedRef {
        id: r.string("id")?,
        display_id: r.string("displayId")?,
        kind: r.string("type")?,
        state: r.named("state", RefSyncState::parse)?,
        tag: r.boolean("tag")?,
    })
}

fn read_mirror<V: JsonValue>(value: &V) -> Result<MirrorStatus> {
    let m = Object(value);
    Ok(MirrorStatus {
        id: m.integer("id")?,
        url: m.string("url")?,
        enabled: m.boolean("enabled")?,
        update_status: m.named("updateStatus", UpdateStatus::parse)?,
        last_update_at: m.optional_integer("lastUpdateAt")?,
        last_update_started_at: m.optional_integer("lastUpdateStartedAt")?,
        last_successful_update_at: m.optional_integer("lastSuccessfulUpdateAt")?,
        last_error: m.optional_string("lastError")?,
    })
}

fn read_job<V: JsonValue>(value: &V) -> Result<Job> {
    let j = Object(value);
    Ok(Job {
        id: j.integer("id")?,
        kind: j.named("kind", JobKind::parse)?,
        repository_id: j.optional_integer("repositoryId")?,
        remote_mirror_id: j.optional_integer("remoteMirrorId")?,
        upstream_id: None,
        reason: j.named("reason", JobReason::parse)?,
        state: j.named("state", JobState::parse)?,
        attempt: u32::try_from(j.integer("attempt")?).map_err(|_| ReadError("attempt"))?,
        enqueued_at: j.integer("enqueuedAt")?,
        not_before: j.optional_integer("notBefore")?,
        lease_owner: j.optional_integer("leaseOwner")?,
        lease_deadline: j.optional_integer("leaseDeadline")?,
        lease_id: None,
        payload: None,
        outcome: None,
        message: None,
    })
}

fn read_node<V: JsonValue>(value: &V) -> Result<NodeDto> {
    let n = Object(value);
    Ok(NodeDto {
        id: n.integer("id")?,
        name: n.string("name")?,
        created_date: n.integer("createdDate")?,
        last_seen: n.optional_integer("lastSeen")?,
    })
}

/// serde's own parsed JSON, so the reader can be checked against the serializer.
impl JsonValue for serde_json::Value {
    fn member(&self, name: &str) -> Option<Self> {
        self.get(name).filter(|v| !v.is_null()).cloned()
    }

    fn string(&self) -> Option<String> {
        self.as_str().map(str::to_owned)
    }

    fn number(&self) -> Option<f64> {
        self.as_f64()
    }

    fn boolean(&self) -> Option<bool> {
        self.as_bool()
    }

    fn elements(&self) -> Option<Vec<Self>> {
        self.as_array().cloned()
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;
    use crate::status::tests::sample;

    #[test]
    fn reads_back_exactly_what_serde_writes() {
        let mut fork = RefSyncStatus::new(
            false,
            true,
            Some(7),
            vec![("refs/heads/a".into(), RefSyncState::Ahead), ("refs/tags/t".into(), RefSyncState::Orphaned)],
        );
        fork.unavailable_reason = Some("The origin repository MF/app was deleted.".into());
        fork.last_error = Some("push refused".into());
        let with_fork = sample().into_iter().map(|s| s.with_fork(Some(fork.clone())));
        let farm = crate::status::FarmStatus {
            upstream: "https://bb.example".into(),
            status: "ERROR_AVAILABLE".into(),
            content_hash: Some("ab".repeat(32)),
            upstream_content_hash: None,
            last_sync: Some(9),
        };
        let with_farm = sample().into_iter().map(|s| s.with_farm(Some(farm.clone())));
        for status in sample().into_iter().chain(with_fork).chain(with_farm) {
            let value = serde_json::to_value(&status).expect("serializes");
            assert_eq!(RepositoryStatus::read(&value), Ok(status));
        }
    }

    #[test]
    fn names_the_bad_field() {
        let mut value = serde_json::to_value(&sample()[0]).expect("serializes");
        value["remoteMirrors"][0]["updateStatus"] = json!("exploded");
        assert_eq!(RepositoryStatus::read(&value), Err(ReadError("updateStatus")));
        value["summary"]["total"] = json!(1.5);
        assert_eq!(RepositoryStatus::read(&value), Err(ReadError("total")));
        assert_eq!(RepositoryStatus::read(&json!([])), Err(ReadError("repository")));
    }
}
