//! Remembering who a token belongs to (and the instance's settings) for a few seconds, so that most authenticated requests
//! spend no storage round trip on authentication. A Worker isolate serves many requests; the
//! shell keeps one [`CallerCache`] per isolate and lends it to each request's service.
//!
//! What is remembered is only the token → caller mapping (the user, their global role and the
//! token's scope), never grants: those are read with each request's data. Any change to who may
//! do what made through this isolate (a token revoked, a user removed, a role changed) forgets
//! everything at once; other isolates forget within [`CALLER_TTL_MS`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::Caller;
use crate::admin::InstanceSettings;
use crate::time::Timestamp;

/// How long a caller is remembered: the longest a revocation made through another isolate
/// can go unnoticed.
pub const CALLER_TTL_MS: i64 = 10_000;

/// Most callers remembered; past it, the cache starts over.
const MAX_CALLERS: usize = 1024;

/// Token hash → caller, each until a deadline; and the instance's settings, likewise.
#[derive(Debug, Default)]
pub struct CallerCache {
    entries: RefCell<HashMap<String, (Caller, Timestamp)>>,
    settings: RefCell<Option<(Rc<InstanceSettings>, Timestamp)>>,
}

impl CallerCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    pub(super) fn get(&self, token_hash: &str, now: Timestamp) -> Option<Caller> {
        let entries = self.entries.borrow();
        entries.get(token_hash).filter(|(_, until)| *until > now).map(|(caller, _)| caller.clone())
    }

    pub(super) fn put(&self, token_hash: String, caller: Caller, now: Timestamp) {
        let mut entries = self.entries.borrow_mut();
        if entries.len() >= MAX_CALLERS {
            entries.clear();
        }
        entries.insert(token_hash, (caller, now.plus_millis(CALLER_TTL_MS)));
    }

    /// Forgets everyone.
    pub fn clear(&self) {
        self.entries.borrow_mut().clear();
    }

    /// The instance's settings, if remembered and not yet stale.
    pub(super) fn settings(&self, now: Timestamp) -> Option<Rc<InstanceSettings>> {
        self.settings.borrow().as_ref().filter(|(_, until)| *until > now).map(|(s, _)| Rc::clone(s))
    }

    pub(super) fn put_settings(&self, settings: Rc<InstanceSettings>, now: Timestamp) {
        *self.settings.borrow_mut() = Some((settings, now.plus_millis(CALLER_TTL_MS)));
    }

    /// Forgets the instance's settings (after a change made through this isolate).
    pub(super) fn forget_settings(&self) {
        *self.settings.borrow_mut() = None;
    }
}
