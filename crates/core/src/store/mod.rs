//! Storage and cryptography for the core's service. Storage is written once, as SQL, in
//! [`Store`]; each platform lends it a [`port::Database`] (D1 on the edge, SQLite in tests)
//! that runs a batch of statements atomically. Cryptography is the [`Crypto`] port (WebCrypto on
//! the edge).
//!
//! Every write method is one batch: it either happens whole or not at all, so a request that
//! fails writes nothing.

#![allow(async_fn_in_trait)] // The shells are single-threaded (Workers); no `Send` bound is wanted.

mod admin;
mod audit;
mod farm;
#[cfg(all(test, not(target_arch = "wasm32")))]
pub mod faults;
mod forks;
mod groups;
mod hooks;
mod identity;
pub mod limits;
pub use mesh::{MeshWorld, MoveContext, MoveEnd, SupportZip};
mod mail;
mod mesh;
mod migration;
mod mirrors;
mod nodes;
pub mod port;
mod protected;
mod queue;
mod registry;
#[cfg(all(test, not(target_arch = "wasm32")))]
pub mod sqlite;
mod ssh;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
mod triggers;

use std::collections::HashMap;

pub use admin::{HistoryOrder, PasswordSignIn, Rejections, UserRateLimitRecord};
pub(crate) use audit::AuditRow;
pub use audit::{AuditCarry, AuditRecord};
pub use farm::{DiscoveryWrite, FarmRepository, QueuedFarmSync};
pub use forks::{ForkOutcome, ForkSync, ForkView};
pub use groups::GroupGrantOn;
pub use mail::{NoticeWrite, target};
pub(crate) use migration::{ExportRow, ProjectGrantRow};
pub use migration::{ImportWrite, MigrationUpdate};
pub use mirrors::{STATUS_MIRRORS, StatusSnapshot};
use port::{Database, DatabaseError, Outcome, Statement};
pub use queue::{DiscoveryOutcome, JobContext, Poll, PollAsked, Reported, SyncRecord, UpstreamPollOutcome};
pub use registry::{RepositoryFilter, RepositoryKey, Viewer};

use crate::identity::Level;
use crate::mirrors::{PullMirror, RemoteMirror};
use crate::time::Timestamp;

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

impl From<DatabaseError> for StoreError {
    fn from(e: DatabaseError) -> Self {
        match e {
            DatabaseError::Unique(detail) => Self::Conflict(conflict_message(&detail).into()),
            other => Self::Backend(other.to_string()),
        }
    }
}

/// What a client is told about a uniqueness clash, by the table and column SQLite names.
fn conflict_message(detail: &str) -> &'static str {
    if detail.contains("users.") {
        "A user with that name already exists."
    } else if detail.contains("projects.key") {
        "That project key is already taken."
    } else if detail.contains("projects.name") {
        "That project name is already taken."
    } else if detail.contains("repositories.") {
        "A repository with that name already exists in this project."
    } else if detail.contains("farm_nodes.") {
        "A node with that name already exists."
    } else {
        "That already exists."
    }
}

/// A row that does not read as its domain type.
fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(format!("unreadable {what} row"))
}

/// Durable state — users, tokens, projects, repositories, grants, mirrors, the job queue and
/// farm nodes — as SQL over a [`Database`]. The statements live with their resource
/// (`identity`, `registry`, `mirrors`, `queue`, `nodes`, `triggers`); each method is one batch,
/// so one round trip, and a write either happens whole or not at all.
pub struct Store<D> {
    db: D,
    /// The audit event armed for the request being answered (see `audit`).
    audit: std::cell::RefCell<audit::AuditSlot>,
}

impl<D: Database> Store<D> {
    /// Storage over a database that has the `migrations/` applied.
    pub fn new(db: D) -> Self {
        Self { db, audit: std::cell::RefCell::default() }
    }

    /// The database underneath.
    pub fn database(&self) -> &D {
        &self.db
    }

    /// Runs statements as one atomic batch. The first batch that writes while an audit event
    /// is armed carries it (appended last, so the statements' outcomes keep their places).
    async fn batch(&self, mut statements: Vec<Statement>) -> StoreResult<Vec<Outcome>> {
        let Some(event) = self.take_armed(&statements) else {
            return Ok(self.db.batch(statements).await?);
        };
        statements.push(event.clone());
        match self.db.batch(statements).await {
            Ok(mut outcomes) => {
                let carried = outcomes.pop();
                self.settle_armed(event, Some(carried.unwrap_or_default()));
                Ok(outcomes)
            }
            Err(e) => {
                self.settle_armed(event, None);
                Err(e.into())
            }
        }
    }

    /// Runs one statement.
    async fn one(&self, statement: Statement) -> StoreResult<Outcome> {
        self.batch(vec![statement]).await?.pop().ok_or_else(|| StoreError::Backend("no result".into()))
    }

    /// Runs one statement and reads its rows as `T`.
    async fn rows<T: port::FromRow>(&self, statement: Statement) -> StoreResult<Vec<T>> {
        Ok(self.one(statement).await?.read()?)
    }

    /// Runs one statement and reads its first row as `T`.
    async fn row<T: port::FromRow>(&self, statement: Statement) -> StoreResult<Option<T>> {
        Ok(self.one(statement).await?.first()?)
    }
}

/// Rows fetched with one more than `limit`: the page, and whether another follows.
fn split_page<T>(mut rows: Vec<T>, limit: u64) -> (Vec<T>, bool) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    rows.truncate(limit);
    (rows, more)
}

/// The outcome of statement `i` of a batch.
fn nth(outcomes: &mut [Outcome], i: usize) -> StoreResult<Outcome> {
    outcomes.get_mut(i).map(std::mem::take).ok_or_else(|| StoreError::Backend("missing batch result".into()))
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
    /// PBKDF2-HMAC-SHA256 of a password: a 32-byte key (passwords are stored as these).
    async fn pbkdf2_sha256(&self, password: &[u8], salt: &[u8], iterations: u32) -> Result<Vec<u8>, CryptoError>;
    /// Whether `signature` is `public_key`'s (32 raw bytes) Ed25519 signature of `message`
    /// (licenses). A malformed key or signature is `Ok(false)`.
    async fn ed25519_verify(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<bool, CryptoError>;
    /// The Ed25519 public key (32 raw bytes) of the private key with this 32-byte seed (an
    /// SSH-key mirror's key pair).
    async fn ed25519_public_key(&self, seed: &[u8]) -> Result<Vec<u8>, CryptoError>;
    /// The control plane's Ed25519 public key (32 raw bytes): nodes verify what it signs.
    async fn control_plane_key(&self) -> Result<Vec<u8>, CryptoError>;
    /// The control plane's Ed25519 signature (64 bytes) of `message`.
    async fn control_plane_sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError>;
}

/// Why a blob could not be stored or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// The deployment has no blob storage.
    #[error("no blob storage is configured")]
    Unavailable,
    /// The platform's storage failed.
    #[error("blob storage failure: {0}")]
    Platform(String),
}

/// Blobs too large or too binary for the database (avatars): R2 on the edge, memory in tests.
pub trait Blobs {
    /// Stores `bytes` under `key`, replacing what was there.
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), BlobError>;
    /// The bytes stored under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError>;
    /// Removes `key` (nothing there is fine).
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
    /// The size of the blob under `key`, if there is one (R2 answers without reading it).
    async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        Ok(self.get(key).await?.map(|bytes| bytes.len() as u64))
    }
}

/// No blob storage: storing fails, reading finds nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBlobs;

impl Blobs for NoBlobs {
    async fn put(&self, _key: &str, _bytes: Vec<u8>, _content_type: &str) -> Result<(), BlobError> {
        Err(BlobError::Unavailable)
    }
    async fn get(&self, _key: &str) -> Result<Option<Vec<u8>>, BlobError> {
        Ok(None)
    }
    async fn delete(&self, _key: &str) -> Result<(), BlobError> {
        Ok(())
    }
}

/// Blobs in this process's memory (tests).
#[derive(Debug, Default)]
pub struct MemoryBlobs(std::cell::RefCell<HashMap<String, Vec<u8>>>);

impl Blobs for MemoryBlobs {
    async fn put(&self, key: &str, bytes: Vec<u8>, _content_type: &str) -> Result<(), BlobError> {
        self.0.borrow_mut().insert(key.to_owned(), bytes);
        Ok(())
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError> {
        Ok(self.0.borrow().get(key).cloned())
    }
    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        self.0.borrow_mut().remove(key);
        Ok(())
    }
}
