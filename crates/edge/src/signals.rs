//! Waking waiting requests (the core's [`mirrorfarm_core::queue::Signals`] port) with one Durable
//! Object: it holds each topic's generation and the requests waiting on it, so a farm node's long
//! poll is answered the moment a job is queued, and a request waiting for a node's result the
//! moment the node reports — across every isolate, which a per-isolate wake-up could not do.
//!
//! The object keeps nothing in storage: after an eviction generations restart at 0, which every
//! waiter sees as a change (it looks again), so nothing is missed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use futures_channel::oneshot;
use futures_util::future::{Either, select};
use mirrorfarm_core::api::{Query, split_request_url};
use mirrorfarm_core::queue::Topic;
use mirrorfarm_core::time::Timestamp;
use worker::{Delay, DurableObject, Env, Request, Response, Result, State, Stub, durable_object};

/// Name of the Durable Object binding.
pub(crate) const BINDING: &str = "SIGNALS";

/// The one object all isolates wake each other through.
#[durable_object(fetch)]
pub struct Signals {
    topics: RefCell<HashMap<String, TopicState>>,
}

#[derive(Default)]
struct TopicState {
    generation: u64,
    waiters: Vec<oneshot::Sender<u64>>,
}

impl DurableObject for Signals {
    fn new(_state: State, _env: Env) -> Self {
        Self { topics: RefCell::new(HashMap::new()) }
    }

    /// `GET /generation?topic=`, `GET /notify?topic=` (advances it, wakes its waiters) and
    /// `GET /wait?topic=&seen=&ms=` (answers when the generation differs from `seen`, or after
    /// `ms`). Each answers the generation as text.
    async fn fetch(&self, req: Request) -> Result<Response> {
        let url = req.inner().url();
        let (_, path, query) = split_request_url(&url);
        let query = Query::parse(query);
        let topic = query.get("topic").unwrap_or_default().to_owned();
        let number = |name: &str| query.get(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let generation = match path {
            "/notify" => {
                let mut topics = self.topics.borrow_mut();
                let state = topics.entry(topic).or_default();
                state.generation += 1;
                let now = state.generation;
                for waiter in state.waiters.drain(..) {
                    // A waiter that gave up is gone: nothing to wake.
                    let _ = waiter.send(now);
                }
                now
            }
            "/wait" => {
                let receiver = {
                    let mut topics = self.topics.borrow_mut();
                    let state = topics.entry(topic.clone()).or_default();
                    if state.generation != number("seen") {
                        return Response::ok(state.generation.to_string());
                    }
                    let (sender, receiver) = oneshot::channel();
                    state.waiters.retain(|w| !w.is_canceled());
                    state.waiters.push(sender);
                    receiver
                };
                let timeout = Delay::from(Duration::from_millis(number("ms").min(30_000)));
                match select(receiver, timeout).await {
                    Either::Left((Ok(generation), _)) => generation,
                    _ => self.topics.borrow().get(&topic).map_or(0, |s| s.generation),
                }
            }
            _ => self.topics.borrow().get(&topic).map_or(0, |s| s.generation),
        };
        Response::ok(generation.to_string())
    }
}

/// The core's `Signals` port over the object; without the binding nothing waits.
pub(crate) struct SignalsStub(Option<Stub>);

impl SignalsStub {
    /// The object bound as [`BINDING`], if the deployment has it.
    pub(crate) fn new(env: &Env) -> Self {
        let stub = env.durable_object(BINDING).and_then(|ns| ns.id_from_name("signals")?.get_stub()).ok();
        Self(stub)
    }

    async fn call(&self, path: &str) -> Option<u64> {
        let stub = self.0.as_ref()?;
        let mut answer = stub.fetch_with_str(&format!("https://signals{path}")).await.ok()?;
        answer.text().await.ok()?.trim().parse().ok()
    }
}

impl mirrorfarm_core::queue::Signals for SignalsStub {
    async fn generation(&self, topic: Topic) -> Option<u64> {
        self.call(&format!("/generation?topic={}", topic.as_str())).await
    }

    async fn wait(&self, topic: Topic, seen: u64, timeout_ms: i64) -> Option<u64> {
        let ms = timeout_ms.max(0);
        self.call(&format!("/wait?topic={}&seen={seen}&ms={ms}", topic.as_str())).await
    }

    async fn notify(&self, topic: Topic) {
        self.call(&format!("/notify?topic={}", topic.as_str())).await;
    }

    fn now(&self) -> Option<Timestamp> {
        Some(crate::now())
    }
}
