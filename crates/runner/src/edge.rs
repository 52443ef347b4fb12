//! The node's side of the edge's node protocol (`/rest/mirrorfarm/1.0/`).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use mirrorfarm_core::api::encode;
use mirrorfarm_core::migration::MigrationState;
use mirrorfarm_core::migration::archive::{ImportAnswer, ImportedRepository, MigrationAck, MigrationProgress};
use mirrorfarm_core::nodes::{
    CloneAccess, CloneAccessRequest, CopiesGone, HeartbeatAnswer, HeartbeatRequest, HeldCopies, JobReport,
    LeaseRequest, LeasedJob, ReleaseRequest, RenewRequest, RepositoryWork, ResultRecorded, SyncQueued,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

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
    /// Who this node is and the control plane's key, once a heartbeat said (shared by clones).
    trust: Arc<RwLock<Option<Trust>>>,
}

/// What the edge told this node about itself and its signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Trust {
    /// This node's id.
    pub(crate) node_id: i64,
    /// The control plane's Ed25519 public key (32 bytes), if the edge signs.
    pub(crate) key: Option<Vec<u8>>,
}

impl Trust {
    /// Whether `signature` is the control plane's over `message`. With no key (an edge that
    /// cannot sign), nothing is signed and nothing need verify.
    pub(crate) fn verifies(&self, message: &[u8], signature: Option<&[u8]>) -> bool {
        match (&self.key, signature) {
            (None, _) => true,
            (Some(key), Some(signature)) => ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
                .verify(message, signature)
                .is_ok(),
            (Some(_), None) => false,
        }
    }
}

impl EdgeClient {
    /// A client of the edge at `base` (e.g. `http://127.0.0.1:8787`).
    pub(crate) fn new(base: &str, node_token: &str) -> Self {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            authorization: format!("Bearer {node_token}"),
            agent,
            trust: Arc::default(),
        }
    }

    /// Registers a node named `name` at the edge with an administrator's token (`mfp_…`), as
    /// `mirrorfarm-runner register` does: the answer holds the node's own token, shown this once.
    pub(crate) fn register_node(
        base: &str,
        admin_token: &str,
        name: &str,
    ) -> Result<mirrorfarm_core::nodes::RegisteredNode, EdgeError> {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
        let url = format!("{}/rest/mirrorfarm/1.0/nodes", base.trim_end_matches('/'));
        let answer = Self::answer(
            agent
                .post(&url)
                .set("Authorization", &format!("Bearer {admin_token}"))
                .send_json(serde_json::json!({ "name": name })),
        )?
        .unwrap_or_default();
        Self::read(answer, "registered node")
    }

    /// What the last heartbeat said of this node and the control plane's key.
    pub(crate) fn trust(&self) -> Option<Trust> {
        self.trust.read().map(|t| t.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    fn post(&self, path: &str, body: &impl Serialize) -> Result<Option<Value>, EdgeError> {
        let url = format!("{}/rest/mirrorfarm/1.0{path}", self.base);
        let body = serde_json::to_value(body).map_err(|e| EdgeError::Transport(e.to_string()))?;
        Self::answer(self.agent.post(&url).set("Authorization", &self.authorization).send_json(body))
    }

    /// Reads an answer as the node protocol's type for it.
    fn read<T: DeserializeOwned>(answer: Value, what: &str) -> Result<T, EdgeError> {
        serde_json::from_value(answer).map_err(|e| EdgeError::Transport(format!("unreadable {what}: {e}")))
    }

    fn get(&self, path: &str) -> Result<Option<Value>, EdgeError> {
        let url = format!("{}/rest/mirrorfarm/1.0{path}", self.base);
        Self::answer(self.agent.get(&url).set("Authorization", &self.authorization).call())
    }

    fn answer(result: Result<ureq::Response, ureq::Error>) -> Result<Option<Value>, EdgeError> {
        match result {
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

    /// Tells the edge this node is alive and what it measured of its links; answers the log
    /// filter nodes are to use and the peers to measure next, and keeps what it says of this
    /// node and the control plane's key.
    pub(crate) fn heartbeat(
        &self,
        clone_url: Option<&str>,
        ssh_url: Option<&str>,
        links: Vec<mirrorfarm_core::mesh::LinkProbe>,
    ) -> Result<HeartbeatAnswer, EdgeError> {
        let asked =
            HeartbeatRequest { clone_url: clone_url.map(str::to_owned), ssh_url: ssh_url.map(str::to_owned), links };
        let answer = self.post("/nodes/heartbeat", &asked)?.unwrap_or_default();
        let answer = Self::read::<HeartbeatAnswer>(answer, "heartbeat")?;
        let key = answer.control_plane_key.as_deref().and_then(mirrorfarm_core::hex::decode).filter(|k| k.len() == 32);
        let trust = Trust { node_id: answer.node.id, key };
        *self.trust.write().unwrap_or_else(|p| p.into_inner()) = Some(trust);
        Ok(answer)
    }

    /// Uploads the support zip `id` this node built.
    pub(crate) fn upload_support_zip(&self, id: i64, zip: &[u8]) -> Result<(), EdgeError> {
        let url = format!("{}/rest/mirrorfarm/1.0/nodes/support-zips/{id}", self.base);
        let sent = self
            .agent
            .put(&url)
            .set("Authorization", &self.authorization)
            .set("Content-Type", "application/zip")
            .send_bytes(zip);
        Self::answer(sent).map(drop)
    }

    /// Which of the repositories this node holds copies of no longer exist.
    pub(crate) fn gone_repositories(&self, held: Vec<i64>) -> Result<Vec<i64>, EdgeError> {
        let answer = self.post("/nodes/copies", &HeldCopies { repository_ids: held })?.unwrap_or_default();
        Self::read::<CopiesGone>(answer, "copies").map(|g| g.removed_repositories)
    }

    /// Whether the caller with `authorization` may clone `key/slug` from this node: its id if so.
    pub(crate) fn clone_access(&self, key: &str, slug: &str, authorization: Option<String>) -> Result<i64, EdgeError> {
        let asked =
            CloneAccessRequest { project_key: key.to_owned(), slug: slug.to_owned(), authorization, ssh_key: None };
        self.ask_clone_access(&asked)
    }

    /// Whether the owner of the SSH key `ssh_key` (`<type> <base64>`) may clone `key/slug` from
    /// this node: its id if so.
    pub(crate) fn clone_access_by_key(&self, key: &str, slug: &str, ssh_key: &str) -> Result<i64, EdgeError> {
        let asked = CloneAccessRequest {
            project_key: key.to_owned(),
            slug: slug.to_owned(),
            authorization: None,
            ssh_key: Some(ssh_key.to_owned()),
        };
        self.ask_clone_access(&asked)
    }

    fn ask_clone_access(&self, asked: &CloneAccessRequest) -> Result<i64, EdgeError> {
        let (key, slug) = (asked.project_key.as_str(), asked.slug.as_str());
        let caller = crate::records::hex_sha256(asked.caller_text().as_bytes());
        let answer = self.post("/nodes/clone-access", asked)?.unwrap_or_default();
        let access = Self::read::<CloneAccess>(answer, "clone access")?;
        // The edge signs its answer for this node; a node that knows the key serves only on it.
        if let Some(trust) = self.trust() {
            let signed = mirrorfarm_core::mesh::grant::clone_access_bytes(
                trust.node_id,
                access.repository_id,
                key,
                slug,
                &caller,
            );
            let signature = access.signature.as_deref().and_then(mirrorfarm_core::hex::decode);
            if !trust.verifies(&signed, signature.as_deref()) {
                return Err(EdgeError::Transport("the clone-access answer is not signed by the control plane".into()));
            }
        }
        Ok(access.repository_id)
    }

    /// Leases the next job (of one repository only, if given), waiting up to `wait_seconds` at
    /// the edge for one to be queued; `None` if none was due.
    pub(crate) fn lease(
        &self,
        lease_seconds: u64,
        repository: Option<i64>,
        wait_seconds: u64,
    ) -> Result<Option<LeasedJob>, EdgeError> {
        let wait_seconds = (wait_seconds > 0).then_some(wait_seconds);
        let asked = LeaseRequest { lease_seconds: Some(lease_seconds), repository_id: repository, wait_seconds };
        self.post("/jobs/lease", &asked)?.map(|v| Self::read(v, "job")).transpose()
    }

    /// Queues a sync of one repository (`repo`: its id or `KEY/slug`); returns its id and how
    /// many jobs wait for it.
    pub(crate) fn sync_repository(&self, repo: &str) -> Result<(i64, u64), EdgeError> {
        let answer = self.post(&format!("/repos/{}/sync", encode(repo)), &serde_json::Map::new())?;
        let queued: SyncQueued = Self::read(answer.unwrap_or_default(), "sync answer")?;
        Ok((queued.repository_id, queued.queued))
    }

    /// What a sync of one repository involves, with credentials (nothing is leased).
    pub(crate) fn repository_work(&self, repo: &str) -> Result<RepositoryWork, EdgeError> {
        let answer = self.get(&format!("/repos/{}/work", encode(repo)))?.unwrap_or_default();
        Self::read(answer, "work")
    }

    /// Extends a lease.
    pub(crate) fn renew(&self, job: &LeasedJob, lease_seconds: u64) -> Result<(), EdgeError> {
        let asked = RenewRequest { lease_id: job.lease_id.clone(), lease_seconds: Some(lease_seconds) };
        self.post(&format!("/jobs/{}/renew", job.id), &asked).map(|_| ())
    }

    /// Reports a try's outcome.
    pub(crate) fn report(&self, job: &LeasedJob, report: &JobReport) -> Result<Option<ResultRecorded>, EdgeError> {
        let answer = self.post(&format!("/jobs/{}/result", job.id), report)?;
        Ok(answer.and_then(|v| serde_json::from_value(v).ok()))
    }

    /// A hook script's content, by id.
    pub(crate) fn hook_script(&self, id: i64) -> Result<Vec<u8>, EdgeError> {
        let url = format!("{}/rest/mirrorfarm/1.0/nodes/hook-scripts/{id}", self.base);
        let response = match self.agent.get(&url).set("Authorization", &self.authorization).call() {
            Ok(r) => r,
            Err(e) => return Self::answer(Err(e)).map(|_| Vec::new()),
        };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(response.into_reader(), (mirrorfarm_core::hooks::MAX_SCRIPT_BYTES + 1) as u64),
            &mut bytes,
        )
        .map_err(|e| EdgeError::Transport(e.to_string()))?;
        Ok(bytes)
    }

    /// Reports progress on migration job `job_id`; answers the job's state (CANCELING: stop).
    pub(crate) fn migration_progress(
        &self,
        job_id: i64,
        progress: &MigrationProgress,
    ) -> Result<MigrationState, EdgeError> {
        let answer = self.post(&format!("/nodes/migration/{job_id}/progress"), progress)?.unwrap_or_default();
        Self::read::<MigrationAck>(answer, "migration state").map(|a| a.state)
    }

    /// Asks the edge to create one imported repository.
    pub(crate) fn import_repository(
        &self,
        job_id: i64,
        imported: &ImportedRepository,
    ) -> Result<ImportAnswer, EdgeError> {
        let answer = self.post(&format!("/nodes/migration/{job_id}/repositories"), imported)?.unwrap_or_default();
        Self::read(answer, "import answer")
    }

    /// An agent for archives: no overall deadline (an archive may take long), but one per read
    /// and write.
    fn archive_agent() -> ureq::Agent {
        ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(120))
            .timeout_write(Duration::from_secs(120))
            .build()
    }

    /// Streams the archive at `file` to the edge for export job `job_id` (into R2).
    pub(crate) fn upload_archive(&self, job_id: i64, file: &std::path::Path) -> Result<(), EdgeError> {
        let url = format!("{}/rest/mirrorfarm/1.0/nodes/migration/{job_id}/archive", self.base);
        let reader = std::fs::File::open(file).map_err(|e| EdgeError::Transport(e.to_string()))?;
        let size = reader.metadata().map_err(|e| EdgeError::Transport(e.to_string()))?.len();
        let sent = Self::archive_agent()
            .put(&url)
            .set("Authorization", &self.authorization)
            .set("Content-Type", "application/x-tar")
            // A known length: R2 stores a streamed body only when its size is known up front.
            .set("Content-Length", &size.to_string())
            .send(reader);
        Self::answer(sent).map(drop)
    }

    /// Streams import job `job_id`'s archive from the edge (from R2) into `file`.
    pub(crate) fn download_archive(&self, job_id: i64, file: &std::path::Path) -> Result<u64, EdgeError> {
        let url = format!("{}/rest/mirrorfarm/1.0/nodes/migration/{job_id}/archive", self.base);
        let response = match Self::archive_agent().get(&url).set("Authorization", &self.authorization).call() {
            Ok(r) => r,
            Err(e) => return Self::answer(Err(e)).map(|_| 0),
        };
        let mut out = std::fs::File::create(file).map_err(|e| EdgeError::Transport(e.to_string()))?;
        std::io::copy(&mut response.into_reader(), &mut out).map_err(|e| EdgeError::Transport(e.to_string()))
    }

    /// Gives a job back unfinished.
    pub(crate) fn release(&self, job: &LeasedJob) -> Result<(), EdgeError> {
        let asked = ReleaseRequest { lease_id: job.lease_id.clone() };
        self.post(&format!("/jobs/{}/release", job.id), &asked).map(|_| ())
    }
}
