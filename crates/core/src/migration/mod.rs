//! Migration jobs (seed 002): exports, imports and Mesh migrations share one job shape — a state,
//! a progress percentage and message, the node working on it, who started it — and a log of
//! messages (INFO, WARN, ERROR) a client pages through.
//!
//! This module holds that shared model: the types as stored and as sent. What each kind of job
//! does lives with it (exports and imports in [`archive`]; Mesh elsewhere).

pub mod archive;

use serde::Serialize;

use crate::api::Query;
use crate::identity::{User, UserDto};
use crate::time::Timestamp;

/// Why a migration job or message could not be read or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrationError {
    /// No job of that id (and type).
    #[error("No migration job with that id exists.")]
    NoSuchJob,
    /// Cancel asked of a job that has already ended or was already cancelled.
    #[error("The job has already finished or was already cancelled.")]
    AlreadyDone,
    /// A `severity` filter that is not INFO, WARN or ERROR.
    #[error("{0:?} is not a severity: use INFO, WARN or ERROR.")]
    Severity(String),
}

/// What a migration job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MigrationType {
    /// Writes selected repositories into an archive.
    Export,
    /// Recreates the repositories of an archive.
    Import,
    /// Moves repository copies between Mesh (farm) nodes.
    Mesh,
}

crate::wire_names!(MigrationType { Export = "EXPORT", Import = "IMPORT", Mesh = "MESH" });

impl MigrationType {
    /// The job's `type` on the wire, as Bitbucket names its job types.
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::Export => "com.atlassian.bitbucket.migration.export",
            Self::Import => "com.atlassian.bitbucket.migration.import",
            Self::Mesh => "com.atlassian.bitbucket.migration.mesh",
        }
    }
}

/// Where a migration job stands (Bitbucket's `JobState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MigrationState {
    /// Accepted, not yet picked up by a node.
    Initialising,
    /// Prepared, about to run.
    Ready,
    /// Being worked on.
    Running,
    /// The work is done; the result is being written.
    Finalising,
    /// Ended successfully (possibly with warnings).
    Completed,
    /// Ended with an error.
    Failed,
    /// Cancel was asked; the job stops at its next checkpoint.
    Canceling,
    /// Stopped on request.
    Canceled,
    /// Ran longer than it was allowed.
    TimedOut,
    /// Stopped without being asked (its node went away).
    Aborted,
}

crate::wire_names!(MigrationState {
    Initialising = "INITIALISING",
    Ready = "READY",
    Running = "RUNNING",
    Finalising = "FINALISING",
    Completed = "COMPLETED",
    Failed = "FAILED",
    Canceling = "CANCELING",
    Canceled = "CANCELED",
    TimedOut = "TIMED_OUT",
    Aborted = "ABORTED",
});

impl MigrationState {
    /// Every state, in the order a job passes through them.
    pub const ALL: [Self; 10] = [
        Self::Initialising,
        Self::Ready,
        Self::Running,
        Self::Finalising,
        Self::Completed,
        Self::Failed,
        Self::Canceling,
        Self::Canceled,
        Self::TimedOut,
        Self::Aborted,
    ];

    /// The job has ended: nothing more happens to it.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Canceled | Self::TimedOut | Self::Aborted)
    }

    /// A cancel request is accepted in this state (the job runs and was not cancelled yet).
    pub fn can_cancel(self) -> bool {
        !self.is_final() && self != Self::Canceling
    }

    /// The states, as a SQL list, in which a job still runs (counted against concurrency limits).
    pub fn active_sql() -> String {
        Self::ALL.iter().filter(|s| !s.is_final()).map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(", ")
    }
}

/// How serious a job's message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// Something of interest.
    Info,
    /// Something was left out or done differently than asked.
    Warn,
    /// Something failed.
    Error,
}

crate::wire_names!(Severity { Info = "INFO", Warn = "WARN", Error = "ERROR" });

/// The severities a message page is filtered to: every `?severity=` given (repeatable, any
/// case); none given means all.
pub fn severity_filter(query: &Query) -> Result<Vec<Severity>, MigrationError> {
    let mut out = Vec::new();
    for (key, value) in query.pairs() {
        if key != "severity" {
            continue;
        }
        let severity = Severity::parse(value).ok_or_else(|| MigrationError::Severity(value.clone()))?;
        if !out.contains(&severity) {
            out.push(severity);
        }
    }
    Ok(out)
}

/// A migration job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationJob {
    /// Numeric id (unique across the types).
    pub id: i64,
    /// Export, import or Mesh.
    pub kind: MigrationType,
    /// Where it stands.
    pub state: MigrationState,
    /// Percent done, 0..=100.
    pub progress: u32,
    /// What it is doing now.
    pub progress_message: Option<String>,
    /// The farm node working on it, once one has it.
    pub node_id: Option<i64>,
    /// Who started it (gone if the user was deleted).
    pub initiator: Option<User>,
    /// The request as accepted (JSON).
    pub request: String,
    /// The archive's R2 key: what an export wrote or an import reads.
    pub archive_path: Option<String>,
    /// When it was started.
    pub started_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
}

/// A new migration job, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMigrationJob {
    /// Export, import or Mesh.
    pub kind: MigrationType,
    /// Who starts it.
    pub initiator_id: Option<i64>,
    /// The request as accepted (JSON).
    pub request: String,
    /// The archive's R2 key, when known up front (an import's).
    pub archive_path: Option<String>,
    /// A first progress message.
    pub progress_message: Option<String>,
    /// Now.
    pub now: Timestamp,
}

/// A job's progress on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ProgressDto {
    /// What the job is doing now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Percent done, 0..=100.
    pub percentage: u32,
}

/// Bitbucket's job shape (`RestJob`), with our `archivePath` for exports and imports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MigrationJobDto {
    /// Numeric id.
    pub id: i64,
    /// `com.atlassian.bitbucket.migration.export`, `…import` or `…mesh`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Where the job stands.
    pub state: MigrationState,
    /// Percent done and what it is doing.
    pub progress: ProgressDto,
    /// The farm node working on it (its id as text), once one has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Who started it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initiator: Option<UserDto>,
    /// The archive's R2 key (an export's, once written; an import's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_path: Option<String>,
    /// Started, epoch milliseconds.
    pub start_date: i64,
    /// Last changed, epoch milliseconds.
    pub updated_date: i64,
    /// Ended, epoch milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_date: Option<i64>,
}

impl From<&MigrationJob> for MigrationJobDto {
    fn from(j: &MigrationJob) -> Self {
        Self {
            id: j.id,
            kind: j.kind.wire_name(),
            state: j.state,
            progress: ProgressDto { message: j.progress_message.clone(), percentage: j.progress.min(100) },
            node_id: j.node_id.map(|n| n.to_string()),
            initiator: j.initiator.as_ref().map(UserDto::from),
            archive_path: j.archive_path.clone(),
            start_date: j.started_at.millis(),
            updated_date: j.updated_at.millis(),
            end_date: j.ended_at.map(Timestamp::millis),
        }
    }
}

/// A message a job logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationMessage {
    /// Numeric id.
    pub id: i64,
    /// The job.
    pub job_id: i64,
    /// How serious.
    pub severity: Severity,
    /// What it is about (`job`, or a repository's `KEY/slug`).
    pub subject: String,
    /// The message.
    pub text: String,
    /// When it was logged.
    pub created_at: Timestamp,
}

/// A message to log (also what a node reports).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct NewMessage {
    /// How serious.
    pub severity: Severity,
    /// What it is about.
    pub subject: String,
    /// The message.
    pub text: String,
}

impl NewMessage {
    /// A message of `severity` about `subject`.
    pub fn new(severity: Severity, subject: impl Into<String>, text: impl Into<String>) -> Self {
        Self { severity, subject: subject.into(), text: text.into() }
    }
}

/// Bitbucket's job message shape (`RestJobMessage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MigrationMessageDto {
    /// The message's id, as text.
    pub id: String,
    /// INFO, WARN or ERROR.
    pub severity: Severity,
    /// What it is about (`job`, or a repository's `KEY/slug`).
    pub subject: String,
    /// The message.
    pub text: String,
    /// When it was logged (ISO-8601).
    pub created_date: String,
}

impl From<&MigrationMessage> for MigrationMessageDto {
    fn from(m: &MigrationMessage) -> Self {
        Self {
            id: m.id.to_string(),
            severity: m.severity,
            subject: m.subject.clone(),
            text: m.text.clone(),
            created_date: m.created_at.to_iso8601(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn final_states_take_no_cancel_and_canceling_takes_no_second() {
        for s in MigrationState::ALL {
            assert_eq!(MigrationState::parse(s.as_str()), Some(s));
        }
        assert!(MigrationState::Running.can_cancel());
        assert!(MigrationState::Initialising.can_cancel());
        assert!(!MigrationState::Canceling.can_cancel());
        assert!(!MigrationState::Completed.can_cancel());
        assert!(!MigrationState::Canceled.can_cancel());
        assert!(!MigrationState::TimedOut.can_cancel());
        let active = MigrationState::active_sql();
        assert!(active.contains("'CANCELING'") && !active.contains("'COMPLETED'"), "{active}");
    }

    #[test]
    fn severity_is_repeatable_and_checked() {
        let q = Query::parse("severity=warn&severity=ERROR&severity=WARN&limit=2");
        assert_eq!(severity_filter(&q), Ok(vec![Severity::Warn, Severity::Error]));
        assert_eq!(severity_filter(&Query::parse("")), Ok(vec![]));
        assert_eq!(severity_filter(&Query::parse("severity=LOUD")), Err(MigrationError::Severity("LOUD".into())));
    }

    #[test]
    fn the_job_reads_as_bitbucket_shows_it() {
        let job = MigrationJob {
            id: 7,
            kind: MigrationType::Export,
            state: MigrationState::Running,
            progress: 42,
            progress_message: Some("2 of 5 repositories".into()),
            node_id: Some(3),
            initiator: None,
            request: "{}".into(),
            archive_path: None,
            started_at: Timestamp(1000),
            updated_at: Timestamp(2000),
            ended_at: None,
        };
        let json = serde_json::to_value(MigrationJobDto::from(&job)).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"id": 7, "type": "com.atlassian.bitbucket.migration.export", "state": "RUNNING",
                "progress": {"message": "2 of 5 repositories", "percentage": 42}, "nodeId": "3",
                "startDate": 1000, "updatedDate": 2000})
        );
        let message = MigrationMessage {
            id: 617,
            job_id: 7,
            severity: Severity::Warn,
            subject: "P/r".into(),
            text: "t".into(),
            created_at: Timestamp(0),
        };
        let json = serde_json::to_value(MigrationMessageDto::from(&message)).expect("serializes");
        assert_eq!(json["id"], "617");
        assert_eq!(json["severity"], "WARN");
        assert_eq!(json["createdDate"], "1970-01-01T00:00:00.000Z");
    }
}
