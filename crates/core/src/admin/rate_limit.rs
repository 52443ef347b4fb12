//! Rate limiting, as Bitbucket does it: a token bucket per user. Each authenticated request
//! spends one token; tokens come back at `fillRate` per second up to `capacity`; a request that
//! finds the bucket empty is refused (429) with the time until the next token.
//!
//! The arithmetic is here, once. Where the buckets live is the shell's business: on the edge a
//! Durable Object per user holds them, so the count is exact across every isolate.
//!
//! Asking that object costs a round trip per request. So an isolate asks for a block of tokens
//! at once ([`allowance_block`]) and spends them itself ([`Allowances`]) for no longer than the
//! bucket takes to refill them: a burst still gets exactly the bucket's capacity, and no window
//! sees more than an exact bucket would let through. An isolate may hold tokens another isolate
//! of the same user lacks (at most a block each), so across isolates a user may be refused a
//! little early, never late.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// A bucket's size and refill rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct BucketSettings {
    /// Most tokens the bucket holds: the largest burst.
    pub capacity: u32,
    /// Tokens added per second: the sustained rate.
    pub fill_rate: u32,
}

impl Default for BucketSettings {
    /// Bitbucket's defaults: bursts of 60, 5 requests a second after.
    fn default() -> Self {
        Self { capacity: 60, fill_rate: 5 }
    }
}

/// Largest capacity or fill rate accepted (Bitbucket documents no bound; this keeps the
/// milli-token arithmetic far from overflow).
pub const MAX_BUCKET_VALUE: u32 = 1_000_000;

impl BucketSettings {
    /// Checks the values: both at least 1 and at most [`MAX_BUCKET_VALUE`].
    pub fn validate(self) -> Result<Self, (&'static str, String)> {
        for (field, value) in [("capacity", self.capacity), ("fillRate", self.fill_rate)] {
            if !(1..=MAX_BUCKET_VALUE).contains(&value) {
                return Err((field, format!("{field} must be between 1 and {MAX_BUCKET_VALUE}.")));
            }
        }
        Ok(self)
    }
}

/// The instance's rate-limit settings (`GET/PUT admin/rate-limit/settings`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSettings {
    /// Whether requests are limited at all (off until an administrator turns it on).
    pub enabled: bool,
    /// The bucket of every user without settings of their own.
    #[serde(default)]
    pub default_settings: BucketSettings,
}

/// A user's own rate-limit settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRateLimit {
    /// A bucket of their own (`None`: the default's).
    pub settings: Option<BucketSettings>,
    /// Exempt from the limit.
    pub whitelisted: bool,
}

/// The bucket a user's requests spend from, if they are limited at all.
pub fn bucket_for(instance: &RateLimitSettings, user: Option<&UserRateLimit>) -> Option<BucketSettings> {
    match user {
        _ if !instance.enabled => None,
        Some(u) if u.whitelisted => None,
        Some(UserRateLimit { settings: Some(own), .. }) => Some(*own),
        _ => Some(instance.default_settings),
    }
}

/// The bucket a user's failed sign-ins spend from: their usual one while the limit is on, and
/// even while it is off (their own settings, or the default's), so guessing a password is always
/// held to a bucket's rate. Whitelisted users are exempt.
pub fn sign_in_bucket_for(instance: &RateLimitSettings, user: Option<&UserRateLimit>) -> Option<BucketSettings> {
    match user {
        Some(u) if u.whitelisted => None,
        Some(UserRateLimit { settings: Some(own), .. }) => Some(*own),
        _ => Some(instance.default_settings),
    }
}

/// Milli-tokens per token: refill is exact to the millisecond without floating point.
const MILLI: i64 = 1000;

/// One user's bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    /// Milli-tokens held.
    milli_tokens: i64,
    /// When they were counted.
    at: Timestamp,
}

/// A refused request: how long until a token is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Milliseconds until the next token.
    pub retry_after_ms: i64,
}

impl Refused {
    /// `Retry-After` in whole seconds, rounded up (at least 1).
    pub fn retry_after_secs(self) -> i64 {
        ((self.retry_after_ms + 999) / 1000).max(1)
    }
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(settings: BucketSettings, now: Timestamp) -> Self {
        Self { milli_tokens: i64::from(settings.capacity) * MILLI, at: now }
    }

    /// Refills for the time passed, then spends one token, or says how long until one is back.
    pub fn take(&mut self, settings: BucketSettings, now: Timestamp) -> Result<(), Refused> {
        self.take_up_to(settings, 1, now).map(drop)
    }

    /// Refills for the time passed, then spends up to `wanted` tokens (at least one): answers how
    /// many, or how long until one is back.
    pub fn take_up_to(&mut self, settings: BucketSettings, wanted: u32, now: Timestamp) -> Result<u32, Refused> {
        let elapsed = (now.millis() - self.at.millis()).max(0);
        let cap = i64::from(settings.capacity) * MILLI;
        // fill_rate tokens per second = fill_rate milli-tokens per millisecond.
        self.milli_tokens = (self.milli_tokens + elapsed.saturating_mul(i64::from(settings.fill_rate))).min(cap);
        self.at = now.max(self.at);
        let granted = (self.milli_tokens / MILLI).min(i64::from(wanted.max(1)));
        if granted >= 1 {
            self.milli_tokens -= granted * MILLI;
            Ok(u32::try_from(granted).unwrap_or(1))
        } else {
            let rate = i64::from(settings.fill_rate.max(1));
            Err(Refused { retry_after_ms: (MILLI - self.milli_tokens + rate - 1) / rate })
        }
    }
}

/// How many tokens an isolate asks its user's bucket for at once: a second's refill, but at most
/// a quarter of the capacity (so one isolate never holds most of a burst), and at least one.
pub fn allowance_block(settings: BucketSettings) -> u32 {
    settings.fill_rate.min(settings.capacity / 4).max(1)
}

/// Tokens one isolate holds for one user: granted in a block by the user's bucket, spendable
/// until the bucket would have refilled them (so a window never sees more than an exact bucket
/// lets through), and only under the settings they were granted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Allowance {
    remaining: u32,
    until: Timestamp,
    settings: BucketSettings,
}

/// Every user's allowance in one isolate (see the module's doc).
#[derive(Debug, Default)]
pub struct Allowances {
    held: HashMap<i64, Allowance>,
}

impl Allowances {
    /// Spends one of `user`'s held tokens, if a current one is held for these settings.
    pub fn spend(&mut self, user: i64, settings: BucketSettings, now: Timestamp) -> bool {
        match self.held.get_mut(&user) {
            Some(a) if a.remaining > 0 && a.settings == settings && now <= a.until => {
                a.remaining -= 1;
                true
            }
            Some(_) => {
                self.held.remove(&user);
                false
            }
            None => false,
        }
    }

    /// Keeps a block of `granted` tokens the bucket gave at `now`, one of which the caller spends
    /// at once: the rest are held for as long as the bucket takes to refill the block.
    pub fn keep(&mut self, user: i64, settings: BucketSettings, granted: u32, now: Timestamp) {
        if granted <= 1 {
            self.held.remove(&user);
            return;
        }
        let refill_ms = i64::from(granted) * MILLI / i64::from(settings.fill_rate.max(1));
        let until = now.plus_millis(refill_ms);
        self.held.insert(user, Allowance { remaining: granted - 1, until, settings });
    }
}

/// Every user's bucket, in one place (a Durable Object on the edge, memory in tests).
#[derive(Debug, Default)]
pub struct Buckets {
    buckets: HashMap<i64, TokenBucket>,
}

impl Buckets {
    /// No buckets yet: everyone starts full.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spends one of `user`'s tokens.
    pub fn take(&mut self, user: i64, settings: BucketSettings, now: Timestamp) -> Result<(), Refused> {
        self.take_up_to(user, settings, 1, now).map(drop)
    }

    /// Spends up to `wanted` of `user`'s tokens (an isolate's block, see [`allowance_block`]).
    pub fn take_up_to(
        &mut self,
        user: i64,
        settings: BucketSettings,
        wanted: u32,
        now: Timestamp,
    ) -> Result<u32, Refused> {
        self.buckets.entry(user).or_insert_with(|| TokenBucket::full(settings, now)).take_up_to(settings, wanted, now)
    }
}

/// Where the buckets live: the port the service spends tokens through.
#[allow(async_fn_in_trait)] // The shells are single-threaded (Workers); no `Send` bound is wanted.
pub trait RateLimiter {
    /// Spends one of `user`'s tokens at `now` (the edge's limiter keeps its own clock).
    /// `None`: the limiter could not be asked; the request goes through, and the shell logs it.
    async fn take(&self, user: i64, settings: BucketSettings, now: Timestamp) -> Option<Result<(), Refused>>;
}

/// No limiter: every request goes through (a deployment without the Durable Object).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLimiter;

impl RateLimiter for NoLimiter {
    async fn take(&self, _user: i64, _settings: BucketSettings, _now: Timestamp) -> Option<Result<(), Refused>> {
        None
    }
}

/// The buckets in this process's memory: exact for one process (tests, a single node).
#[derive(Debug, Default)]
pub struct LocalLimiter(std::cell::RefCell<Buckets>);

impl RateLimiter for LocalLimiter {
    async fn take(&self, user: i64, settings: BucketSettings, now: Timestamp) -> Option<Result<(), Refused>> {
        Some(self.0.borrow_mut().take(user, settings, now))
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn a_burst_spends_the_capacity_then_waits_for_the_refill() {
        let s = BucketSettings { capacity: 3, fill_rate: 2 };
        let mut b = Buckets::new();
        let t = Timestamp(1_000);
        for _ in 0..3 {
            assert_eq!(b.take(7, s, t), Ok(()));
        }
        // Empty: one token takes 500 ms at 2 per second.
        assert_eq!(b.take(7, s, t), Err(Refused { retry_after_ms: 500 }));
        assert_eq!(b.take(7, s, Timestamp(1_499)).map_err(|r| r.retry_after_ms), Err(1));
        assert_eq!(b.take(7, s, Timestamp(1_500)), Ok(()));
        // Another user has a bucket of their own.
        assert_eq!(b.take(8, s, t), Ok(()));
        // Idle time refills only up to the capacity.
        for _ in 0..3 {
            assert_eq!(b.take(7, s, Timestamp(100_000)), Ok(()));
        }
        assert!(b.take(7, s, Timestamp(100_000)).is_err());
    }

    /// Two isolates with allowances over one bucket: what each request gets.
    fn through_isolates(b: &mut Buckets, isolates: &mut [Allowances], s: BucketSettings, at: i64, i: usize) -> bool {
        let now = Timestamp(at);
        if isolates[i].spend(7, s, now) {
            return true;
        }
        match b.take_up_to(7, s, allowance_block(s), now) {
            Ok(granted) => {
                isolates[i].keep(7, s, granted, now);
                true
            }
            Err(_) => false,
        }
    }

    #[test]
    fn blocks_of_tokens_keep_a_burst_exact_and_ask_the_bucket_seldom() {
        let s = BucketSettings { capacity: 60, fill_rate: 5 };
        assert_eq!(allowance_block(s), 5);
        assert_eq!(allowance_block(BucketSettings { capacity: 3, fill_rate: 100 }), 1, "at least one");
        // One isolate: a burst of 100 at once gets exactly the capacity.
        let (mut b, mut one) = (Buckets::new(), vec![Allowances::default()]);
        let admitted = (0..100).filter(|_| through_isolates(&mut b, &mut one, s, 1_000, 0)).count();
        assert_eq!(admitted, 60);
        // Two isolates taking turns: still never more than the capacity.
        let (mut b, mut two) = (Buckets::new(), vec![Allowances::default(), Allowances::default()]);
        let admitted = (0..100).filter(|i| through_isolates(&mut b, &mut two, s, 1_000, i % 2)).count();
        assert!((55..=60).contains(&admitted), "{admitted}: at most a block early per isolate, never over");
        // Spread over 10 s at 5 per second: every request admitted, the bucket asked once per block.
        let (mut b, mut one) = (Buckets::new(), vec![Allowances::default()]);
        let mut asked = 0;
        for k in 0..50 {
            let now = Timestamp(1_000 + k * 200);
            if !one[0].spend(7, s, now) {
                asked += 1;
                let granted = b.take_up_to(7, s, allowance_block(s), now).expect("a token");
                one[0].keep(7, s, granted, now);
            }
        }
        assert_eq!(asked, 10);
    }

    #[test]
    fn held_tokens_expire_with_the_refill_and_with_new_settings() {
        let s = BucketSettings { capacity: 60, fill_rate: 5 };
        let mut held = Allowances::default();
        held.keep(7, s, 5, Timestamp(0));
        assert!(held.spend(7, s, Timestamp(1_000)), "a block of 5 at 5 per second: held for 1 s");
        assert!(!held.spend(7, s, Timestamp(1_001)), "then the bucket would have refilled them");
        held.keep(7, s, 5, Timestamp(0));
        assert!(!held.spend(7, BucketSettings { capacity: 10, fill_rate: 5 }, Timestamp(0)), "settings changed");
        assert!(!held.spend(7, s, Timestamp(0)), "and the block is dropped");
        held.keep(7, s, 1, Timestamp(0));
        assert!(!held.spend(7, s, Timestamp(0)), "a block of one is spent at once");
        // Idle time cannot add held tokens to a full bucket: a burst after a pause is exact.
        let (mut b, mut one) = (Buckets::new(), vec![Allowances::default()]);
        assert!(through_isolates(&mut b, &mut one, s, 0, 0));
        let admitted = (0..100).filter(|_| through_isolates(&mut b, &mut one, s, 60_000, 0)).count();
        assert_eq!(admitted, 60);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(Refused { retry_after_ms: 1 }.retry_after_secs(), 1);
        assert_eq!(Refused { retry_after_ms: 1001 }.retry_after_secs(), 2);
    }

    #[test]
    fn who_is_limited() {
        let on = RateLimitSettings { enabled: true, default_settings: BucketSettings::default() };
        let own = BucketSettings { capacity: 5, fill_rate: 1 };
        assert_eq!(bucket_for(&RateLimitSettings::default(), None), None);
        assert_eq!(bucket_for(&on, None), Some(BucketSettings::default()));
        assert_eq!(bucket_for(&on, Some(&UserRateLimit { settings: Some(own), whitelisted: false })), Some(own));
        assert_eq!(bucket_for(&on, Some(&UserRateLimit { settings: Some(own), whitelisted: true })), None);
        assert!(BucketSettings { capacity: 0, fill_rate: 1 }.validate().is_err());
        // Failed sign-ins are held to a bucket even while the limit is off.
        assert_eq!(sign_in_bucket_for(&RateLimitSettings::default(), None), Some(BucketSettings::default()));
        let exempt = UserRateLimit { settings: None, whitelisted: true };
        assert_eq!(sign_in_bucket_for(&on, Some(&exempt)), None);
    }
}
