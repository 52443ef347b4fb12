//! The ports the core's service needs from its shell: storage ([`Store`]) and cryptography
//! ([`Crypto`]). The edge implements them over D1 and WebCrypto; unit tests use in-memory fakes.
//!
//! Every write method is atomic: it either happens whole or not at all (the D1 implementation
//! uses one statement or one batch per call), so a request that fails writes nothing.

#![allow(async_fn_in_trait)] // The shells are single-threaded (Workers); no `Send` bound is wanted.

use std::collections::HashMap;

use crate::identity::{AccessToken, GlobalRole, Level, NewUser, User};
use crate::mirrors::{PullMirror, RemoteMirror};
use crate::nodes::{FarmNode, NewNode};
use crate::queue::{Job, JobCompletion, NewJob};
use crate::registry::{NewProject, NewRepository, Project, Repository};
use crate::time::Timestamp;
use crate::urls::StoredUrl;

/// Why a storage call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (the message names what clashed).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The storage backend failed.
    #[error("storage failure: {0}")]
    Backend(String),
}

/// A user's project and repository grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Project id → level.
    pub projects: HashMap<i64, Level>,
    /// Repository id → level.
    pub repositories: HashMap<i64, Level>,
}

/// The mirror whose update state a finished job saves.
#[derive(Debug, Clone, Copy)]
pub enum SavedMirror<'a> {
    /// A push mirror.
    Push(&'a RemoteMirror),
    /// A repository's pull mirror.
    Pull(&'a PullMirror),
}

/// What starts a repository's syncs besides the API: its webhook and its polls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepositoryTriggers {
    /// The repository.
    pub repository_id: i64,
    /// The webhook secret, sealed; `None` when no webhook is set up.
    pub webhook_secret_sealed: Option<String>,
    /// SHA-256 of the upstream's ref listing at the last pull.
    pub upstream_fingerprint: Option<String>,
    /// When the repository was last polled.
    pub last_polled_at: Option<Timestamp>,
}

/// Result of a storage call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Durable state: users, tokens, projects, repositories, grants, mirrors and the job queue.
pub trait Store {
    /// The user with this id.
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>>;
    /// The user with this name or slug (case-insensitive).
    async fn user_by_name(&self, name: &str) -> StoreResult<Option<User>>;
    /// All users, by name.
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// Adds a user; `Conflict` if the name is taken.
    async fn insert_user(&self, user: &NewUser) -> StoreResult<User>;
    /// Removes a user with their tokens and grants.
    async fn delete_user(&self, id: i64) -> StoreResult<()>;
    /// Sets a user's global role.
    async fn set_global_role(&self, user_id: i64, role: GlobalRole) -> StoreResult<()>;

    /// Tokens whose lookup key is `lookup`.
    async fn tokens_by_lookup(&self, lookup: &str) -> StoreResult<Vec<AccessToken>>;
    /// A user's tokens, newest first.
    async fn list_tokens(&self, user_id: i64) -> StoreResult<Vec<AccessToken>>;
    /// Adds a token.
    async fn insert_token(&self, token: &AccessToken) -> StoreResult<()>;
    /// Removes a user's token; false if there was none.
    async fn delete_token(&self, user_id: i64, token_id: &str) -> StoreResult<bool>;

    /// Adds a project; `Conflict` if the key or name is taken.
    async fn insert_project(&self, project: &NewProject) -> StoreResult<Project>;
    /// The project with this key (case-insensitive).
    async fn project_by_key(&self, key: &str) -> StoreResult<Option<Project>>;
    /// All projects, by key.
    async fn list_projects(&self) -> StoreResult<Vec<Project>>;
    /// Removes an (empty) project.
    async fn delete_project(&self, id: i64) -> StoreResult<()>;

    /// Adds a repository; `Conflict` if the slug is taken in its project.
    async fn insert_repository(&self, repo: &NewRepository) -> StoreResult<Repository>;
    /// The repository with this id.
    async fn repository_by_id(&self, id: i64) -> StoreResult<Option<Repository>>;
    /// The repository with this slug in the project.
    async fn repository_by_slug(&self, project_id: i64, slug: &str) -> StoreResult<Option<Repository>>;
    /// Repositories of one project, or of all, by project key then slug.
    async fn list_repositories(&self, project_id: Option<i64>) -> StoreResult<Vec<Repository>>;
    /// Removes a repository with its mirrors, grants and jobs.
    async fn delete_repository(&self, id: i64) -> StoreResult<()>;

    /// A user's grants.
    async fn grants_for(&self, user_id: i64) -> StoreResult<Grants>;
    /// Sets (`Some`) or removes (`None`) a user's grant on a project.
    async fn set_project_grant(&self, project_id: i64, user_id: i64, level: Option<Level>) -> StoreResult<()>;
    /// Sets (`Some`) or removes (`None`) a user's grant on a repository.
    async fn set_repository_grant(&self, repository_id: i64, user_id: i64, level: Option<Level>) -> StoreResult<()>;

    /// One page of a repository's remote mirrors, by id, and their total count.
    async fn list_remote_mirrors(
        &self,
        repository_id: i64,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<RemoteMirror>, u64)>;
    /// A repository's remote mirror.
    async fn remote_mirror(&self, repository_id: i64, id: i64) -> StoreResult<Option<RemoteMirror>>;
    /// Adds a mirror (its `id` is ignored and assigned) and, in the same transaction, queues
    /// `job` for it (the job's mirror id is filled in).
    async fn insert_remote_mirror(&self, mirror: &RemoteMirror, job: Option<&NewJob>) -> StoreResult<RemoteMirror>;
    /// Replaces a mirror's fields and, in the same transaction, queues `job`.
    async fn update_remote_mirror(&self, mirror: &RemoteMirror, job: Option<&NewJob>) -> StoreResult<()>;
    /// Removes a mirror and its waiting jobs.
    async fn delete_remote_mirror(&self, repository_id: i64, id: i64) -> StoreResult<()>;

    /// A repository's pull-mirror settings and state, if it was ever configured or pulled.
    async fn pull_mirror(&self, repository_id: i64) -> StoreResult<Option<PullMirror>>;
    /// Saves pull-mirror settings and state and, in the same transaction, a new upstream URL
    /// for the repository and a job to queue.
    async fn save_pull_mirror(
        &self,
        mirror: &PullMirror,
        upstream: Option<&StoredUrl>,
        job: Option<&NewJob>,
    ) -> StoreResult<()>;

    /// A repository's triggers (webhook secret, last upstream fingerprint, last poll).
    async fn triggers(&self, repository_id: i64) -> StoreResult<Option<RepositoryTriggers>>;
    /// Saves a repository's triggers.
    async fn save_triggers(&self, triggers: &RepositoryTriggers) -> StoreResult<()>;
    /// Repositories with an upstream and an enabled (or implicit) pull mirror not polled since `before`.
    async fn repositories_due_for_poll(&self, before: Timestamp) -> StoreResult<Vec<i64>>;
    /// A repository's enabled push mirrors' ids.
    async fn enabled_remote_mirror_ids(&self, repository_id: i64) -> StoreResult<Vec<i64>>;

    /// Queues a job unless one for the same target is already waiting; returns the waiting job.
    async fn enqueue(&self, job: &NewJob) -> StoreResult<Job>;
    /// A repository's jobs, newest first.
    async fn list_jobs(&self, repository_id: i64) -> StoreResult<Vec<Job>>;
    /// A job by id.
    async fn job(&self, id: i64) -> StoreResult<Option<Job>>;
    /// A remote mirror by id, whatever its repository.
    async fn remote_mirror_by_id(&self, id: i64) -> StoreResult<Option<RemoteMirror>>;

    /// Registers a farm node; `Conflict` if the name is taken.
    async fn insert_node(&self, node: &NewNode) -> StoreResult<FarmNode>;
    /// Nodes whose token lookup key is `lookup`.
    async fn nodes_by_lookup(&self, lookup: &str) -> StoreResult<Vec<FarmNode>>;
    /// All nodes, by name.
    async fn list_nodes(&self) -> StoreResult<Vec<FarmNode>>;
    /// Records contact from a node.
    async fn touch_node(&self, id: i64, now: Timestamp) -> StoreResult<()>;
    /// Atomically leases the oldest due queued job (of `repository` only, if given) whose target
    /// no other lease holds: it becomes `LEASED` by `node_id` under `lease_id` until `deadline`,
    /// its attempt counted. A push waits while its repository's pull is leased or due: the pull
    /// decides what the copy holds, and queues the pushes again if the upstream moved, so pushing
    /// first would only push a stale copy twice.
    async fn lease_next_job(
        &self,
        node_id: i64,
        lease_id: &str,
        now: Timestamp,
        deadline: Timestamp,
        repository: Option<i64>,
    ) -> StoreResult<Option<Job>>;
    /// Extends the lease `lease_id` if it is still held; false if not.
    async fn renew_lease(&self, job_id: i64, lease_id: &str, deadline: Timestamp) -> StoreResult<bool>;
    /// Ends the lease `lease_id` as `completion` and saves `mirror`, in one transaction; false
    /// (and nothing written) if that lease is not the job's current one. When the node `reported`
    /// the outcome, the lease id is kept so a repeated report is recognised; otherwise (expiry,
    /// release) it is forgotten and a late report is refused. A job sent back to the queue while
    /// another waits for the same target is closed instead: the waiting one does the work.
    async fn finish_job(
        &self,
        job_id: i64,
        lease_id: &str,
        completion: JobCompletion,
        reported: bool,
        now: Timestamp,
        mirror: Option<SavedMirror<'_>>,
    ) -> StoreResult<bool>;
    /// Leased jobs whose deadline has passed.
    async fn expired_leases(&self, now: Timestamp) -> StoreResult<Vec<Job>>;
}

/// Why a cryptographic operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The sealing key is missing or unusable.
    #[error("sealing key unavailable: {0}")]
    Key(String),
    /// The platform's crypto failed.
    #[error("crypto failure: {0}")]
    Platform(String),
}

/// Sealing secrets, hashing tokens and drawing random bytes: the platform's cryptography.
pub trait Crypto {
    /// Seals (AEAD-encrypts) a secret for storage.
    async fn seal(&self, plaintext: &str) -> Result<String, CryptoError>;
    /// Opens a value sealed by [`Crypto::seal`].
    async fn unseal(&self, sealed: &str) -> Result<String, CryptoError>;
    /// HMAC-SHA256 of `data` under `key`, lower-case hex (webhook signatures).
    async fn hmac_sha256_hex(&self, key: &[u8], data: &[u8]) -> Result<String, CryptoError>;
    /// SHA-256 of `data`, lower-case hex.
    async fn sha256_hex(&self, data: &[u8]) -> Result<String, CryptoError>;
    /// `len` bytes from a cryptographically secure generator.
    fn random_bytes(&self, len: usize) -> Result<Vec<u8>, CryptoError>;
}
