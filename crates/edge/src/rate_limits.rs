//! The rate limit's buckets (the core's [`RateLimiter`] port) in Durable Objects: one object per
//! user, so every request of that user, from any isolate anywhere, spends from the one bucket —
//! exactly, because an object handles its requests one at a time.
//!
//! The bucket arithmetic is the core's ([`Buckets`]); the object only holds it. It keeps nothing
//! in storage: an evicted object's bucket comes back full, as an idle one would have refilled.
//! An isolate asks for a block of tokens at once and spends them itself while they last
//! ([`Allowances`], the core's rule), so most requests cost no call to the object.

use std::cell::RefCell;

use mirrorfarm_core::admin::RateLimiter;
use mirrorfarm_core::admin::rate_limit::{Allowances, BucketSettings, Buckets, Refused, allowance_block};
use mirrorfarm_core::api::{Query, split_request_url};
use mirrorfarm_core::time::Timestamp;
use worker::{DurableObject, Env, ObjectNamespace, Request, Response, Result, State, durable_object};

/// Name of the Durable Object binding.
pub(crate) const BINDING: &str = "RATE_LIMITS";

/// One user's bucket.
#[durable_object(fetch)]
pub struct RateLimits {
    buckets: RefCell<Buckets>,
}

impl DurableObject for RateLimits {
    fn new(_state: State, _env: Env) -> Self {
        Self { buckets: RefCell::new(Buckets::new()) }
    }

    /// `GET /take?user=&capacity=&fillRate=&n=`: spends up to `n` tokens (at least one) and
    /// answers `ok <granted>`, or the milliseconds until a token is back. The object's own clock
    /// decides, so isolates' clocks never disagree about it.
    async fn fetch(&self, req: Request) -> Result<Response> {
        let url = req.inner().url();
        let (_, _, query) = split_request_url(&url);
        let query = Query::parse(query);
        let number = |name: &str| query.get(name).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        let settings = BucketSettings {
            capacity: u32::try_from(number("capacity")).unwrap_or(1),
            fill_rate: u32::try_from(number("fillRate")).unwrap_or(1),
        };
        let wanted = u32::try_from(number("n")).unwrap_or(1);
        match self.buckets.borrow_mut().take_up_to(number("user"), settings, wanted, crate::now()) {
            Ok(granted) => Response::ok(format!("ok {granted}")),
            Err(refused) => Response::ok(refused.retry_after_ms.to_string()),
        }
    }
}

thread_local! {
    /// The tokens this isolate holds, per user (see [`Allowances`]).
    static HELD: RefCell<Allowances> = RefCell::new(Allowances::default());
}

/// The core's limiter over the objects; without the binding nothing is limited.
pub(crate) struct RateLimitStub(Option<ObjectNamespace>);

impl RateLimitStub {
    pub(crate) fn new(env: &Env) -> Self {
        Self(env.durable_object(BINDING).ok())
    }
}

impl RateLimiter for RateLimitStub {
    async fn take(
        &self,
        user: i64,
        settings: BucketSettings,
        _now: Timestamp,
    ) -> Option<std::result::Result<(), Refused>> {
        let namespace = self.0.as_ref()?;
        if HELD.with(|held| held.borrow_mut().spend(user, settings, crate::now())) {
            return Some(Ok(()));
        }
        let stub = namespace.id_from_name(&format!("user-{user}")).ok()?.get_stub().ok()?;
        let url = format!(
            "https://rate-limits/take?user={user}&capacity={}&fillRate={}&n={}",
            settings.capacity,
            settings.fill_rate,
            allowance_block(settings)
        );
        let text = stub.fetch_with_str(&url).await.ok()?.text().await.ok()?;
        match text.trim().strip_prefix("ok") {
            Some(granted) => {
                let granted = granted.trim().parse().unwrap_or(1);
                HELD.with(|held| held.borrow_mut().keep(user, settings, granted, crate::now()));
                Some(Ok(()))
            }
            None => Some(Err(Refused { retry_after_ms: text.trim().parse().ok()? })),
        }
    }
}
