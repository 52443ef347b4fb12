//! The node's side of the edge's node protocol (`/rest/mirrorfarm/1.0/`).

use std::time::Duration;

use mirrorfarm_core::nodes::{JobReport, LeasedJob};
use serde_json::{Value, json};

/// Why a call to the edge failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EdgeError {
    /// The edge answered with an error status.
    #[error("edge answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The error message from the body.
        message: String,
    },
    /// The edge could not be reached or answered nonsense.
    #[error("edge unreachable: {0}")]
    Transport(String),
}

impl EdgeError {
    /// Whether the edge said the lease is gone (409).
    pub(crate) fn lease_lost(&self) -> bool {
        matches!(self, Self::Status { status: 409, .. })
    }
}

/// A client of one edge, authenticated by a node token.
#[derive(Clone)]
pub(crate) struct EdgeClient {
    base: String,
    authorization: String,
    agent: ureq::Agent,
}

impl EdgeClient {
    /// A client of the edge at `base` (e.g. `http://127.0.0.1:8787`).
    pub(crate) fn new(base: &str, node_token: &str) -> Self {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
        Self { base: base.trim_end_matches('/').to_owned(), authorization: format!("Bearer {node_token}"), agent }
    }

    fn post(&self, path: &str, body: &Value) -> Result<Option<Value>, EdgeError> {
        let url = format!("{}/rest/mirrorfarm/1.0{path}", self.base);
        match self.agent.post(&url).set("Authorization", &self.authorization).send_json(body) {
            Ok(r) if r.status() == 204 => Ok(None),
            Ok(r) => r.into_json().map(Some).map_err(|e| EdgeError::Transport(e.to_string())),
            Err(ureq::Error::Status(status, r)) => {
                let body: Value = r.into_json().unwrap_or_default();
                let message = body["errors"][0]["message"].as_str().unwrap_or("no message").to_owned();
                Err(EdgeError::Status { status, message })
            }
            Err(e) => Err(EdgeError::Transport(e.to_string())),
        }
    }

    /// Tells the edge this node is alive.
    pub(crate) fn heartbeat(&self) -> Result<(), EdgeError> {
        self.post("/nodes/heartbeat", &json!({})).map(|_| ())
    }

    /// Leases the next job, if any.
    pub(crate) fn lease(&self, lease_seconds: u64) -> Result<Option<LeasedJob>, EdgeError> {
        match self.post("/jobs/lease", &json!({ "leaseSeconds": lease_seconds }))? {
            None => Ok(None),
            Some(v) => {
                serde_json::from_value(v).map(Some).map_err(|e| EdgeError::Transport(format!("unreadable job: {e}")))
            }
        }
    }

    /// Extends a lease.
    pub(crate) fn renew(&self, job: &LeasedJob, lease_seconds: u64) -> Result<(), EdgeError> {
        self.post(
            &format!("/jobs/{}/renew", job.id),
            &json!({ "leaseId": job.lease_id, "leaseSeconds": lease_seconds }),
        )
        .map(|_| ())
    }

    /// Reports a try's outcome.
    pub(crate) fn report(&self, job: &LeasedJob, report: &JobReport) -> Result<(), EdgeError> {
        let body = serde_json::to_value(report).map_err(|e| EdgeError::Transport(e.to_string()))?;
        self.post(&format!("/jobs/{}/result", job.id), &body).map(|_| ())
    }

    /// Gives a job back unfinished.
    pub(crate) fn release(&self, job: &LeasedJob) -> Result<(), EdgeError> {
        self.post(&format!("/jobs/{}/release", job.id), &json!({ "leaseId": job.lease_id })).map(|_| ())
    }
}
