//! A [`Database`] that fails the k-th batch on purpose, for the service tests that prove each
//! write route atomic: a request whose batch fails must answer a clean error and leave every
//! table as it found it.

use std::cell::Cell;

use super::port::{Database, DatabaseError, Outcome, Statement};

/// The message of an injected failure (never shown to callers: it is an internal error).
pub const INJECTED: &str = "injected fault";

/// Wraps a database; when armed with `k`, the k-th batch after arming fails without running.
pub struct Faulty<D> {
    inner: D,
    /// Batches left before the one that fails (`None`: disarmed).
    countdown: Cell<Option<u32>>,
    /// Whether the armed fault fired.
    fired: Cell<bool>,
}

impl<D> Faulty<D> {
    /// A disarmed wrapper: every batch goes through.
    pub fn new(inner: D) -> Self {
        Self { inner, countdown: Cell::new(None), fired: Cell::new(false) }
    }

    /// The wrapped database.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Fails the `k`-th batch from now (1: the next one).
    pub fn arm(&self, k: u32) {
        self.countdown.set(Some(k));
        self.fired.set(false);
    }

    /// Disarms; returns whether the fault fired since it was armed.
    pub fn disarm(&self) -> bool {
        self.countdown.set(None);
        self.fired.replace(false)
    }
}

impl<D: Database> Database for Faulty<D> {
    async fn batch(&self, statements: Vec<Statement>) -> Result<Vec<Outcome>, DatabaseError> {
        match self.countdown.get() {
            Some(1) => {
                self.countdown.set(None);
                self.fired.set(true);
                Err(DatabaseError::Backend(INJECTED.into()))
            }
            Some(n) => {
                self.countdown.set(Some(n - 1));
                self.inner.batch(statements).await
            }
            None => self.inner.batch(statements).await,
        }
    }
}
