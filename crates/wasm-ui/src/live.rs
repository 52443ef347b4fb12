//! Keeping a mounted widget current: poll the status with `If-None-Match`, back off on errors,
//! re-render relative times, and stop everything when dropped.
//!
//! No futures: a request is a promise the [`request`] snippet settles by calling the widget's
//! `done` callback, and the next poll is a `setTimeout` of its `tick` callback. Both callbacks
//! live as long as the widget and hold only a `Weak` to it, so dropping the [`Live`] handle frees
//! it at once: its timer is cleared, its request aborted (an aborted request never calls back),
//! its callbacks freed. (Against wasm-bindgen-futures, JsFuture and web-sys' request types, this
//! measured 4 KB gzip smaller.)

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use mirrorfarm_core::status::RepositoryStatus;
use mirrorfarm_core::text::decimal;
use wasm_bindgen::prelude::*;
use web_sys::{AbortController, Element};

use crate::json::parse_status;
use crate::view::{Problem, View, render};

/// The longest wait between tries after repeated errors.
const MAX_BACKOFF_MS: u32 = 10 * 60 * 1000;

#[wasm_bindgen(inline_js = r#"
export function request(url, token, etag, done) {
  const c = new AbortController(), h = new Headers();
  if (token) h.set("Authorization", "Bearer " + token);
  if (etag) h.set("If-None-Match", etag);
  fetch(url, { headers: h, cache: "no-store", signal: c.signal })
    .then(async (r) => [r.status, r.headers.get("ETag"), r.status === 200 ? await r.text() : ""])
    .catch((e) => [0, null, e instanceof Error ? e.message : "the request failed"])
    .then(([status, tag, body]) => c.signal.aborted || done(status, tag, body));
  return c;
}
"#)]
extern "C" {
    /// `GET url` with the bearer `token` and `If-None-Match: etag` if given, bypassing the
    /// browser's cache (the widget revalidates itself). Unless aborted first, it calls `done`
    /// once with the HTTP status, the `ETag` and, for a 200, the body; or with status 0 and the
    /// error's message if no answer came.
    fn request(url: &str, token: Option<String>, etag: Option<String>, done: &JsValue) -> AbortController;
}

// The page's own timer functions, without `window` (looking it up costs the glue four probes).
#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(callback: &JsValue, delay_ms: u32) -> i32;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(timer: i32);
}

/// What to poll and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The status URL.
    pub url: String,
    /// A read-only (`STATUS_READ`) token, sent as a bearer token.
    pub token: Option<String>,
    /// Milliseconds between refreshes while all is well.
    pub refresh_ms: u32,
}

/// A running widget. Dropping it stops it.
pub struct Live {
    inner: Rc<Inner>,
}

/// The callback a request settles with: status, `ETag`, body (or error message).
type Done = Closure<dyn FnMut(u32, Option<String>, String)>;
/// The timer's callback.
type Tick = Closure<dyn FnMut()>;

struct Inner {
    target: Element,
    settings: Settings,
    state: RefCell<State>,
    /// The timer's and the requests' callbacks, kept here (not leaked) and freed with the widget.
    callbacks: RefCell<Option<(Tick, Done)>>,
}

#[derive(Default)]
struct State {
    view: Option<View>,
    etag: Option<String>,
    failures: u32,
    timer: Option<i32>,
    request: Option<AbortController>,
    html: String,
}

/// What one poll came back with.
enum Answer {
    Fresh(Box<RepositoryStatus>, Option<String>),
    Unchanged,
    Final(Problem),
    Retry(Problem),
}

impl Live {
    /// Renders the loading state into `target` and starts polling.
    pub fn start(target: Element, settings: Settings) -> Self {
        let inner = Rc::new(Inner { target, settings, state: RefCell::default(), callbacks: RefCell::new(None) });
        let weak = Rc::downgrade(&inner);
        let tick = Tick::new(move || poll(&weak));
        let weak = Rc::downgrade(&inner);
        let done = Done::new(move |status, tag, body| {
            if let Some(inner) = weak.upgrade() {
                inner.answered(answer(status, tag, body));
            }
        });
        *inner.callbacks.borrow_mut() = Some((tick, done));
        inner.show(View::Loading);
        poll(&Rc::downgrade(&inner));
        Self { inner }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let mut state = self.inner.state.borrow_mut();
        if let Some(timer) = state.timer.take() {
            clear_timeout(timer);
        }
        if let Some(request) = state.request.take() {
            request.abort();
        }
        drop(state);
        self.inner.callbacks.borrow_mut().take();
    }
}

/// One poll: starts the request; [`Inner::answered`] takes it from there.
fn poll(weak: &Weak<Inner>) {
    let Some(inner) = weak.upgrade() else { return };
    let callbacks = inner.callbacks.borrow();
    let Some((_, done)) = callbacks.as_ref() else { return };
    let mut state = inner.state.borrow_mut();
    state.timer = None;
    let settings = &inner.settings;
    state.request = Some(request(&settings.url, settings.token.clone(), state.etag.clone(), done.as_ref()));
}

impl Inner {
    /// Renders `view`, keeping open `<details>` open; the DOM is touched only if the HTML changed.
    fn show(&self, view: View) {
        let open = open_details(&self.target);
        let html = render(&view, js_sys::Date::now() as i64, &open);
        let mut state = self.state.borrow_mut();
        if html != state.html {
            self.target.set_inner_html(&html);
            state.html = html;
        }
        state.view = Some(view);
    }

    fn schedule(&self, delay_ms: u32) {
        let callbacks = self.callbacks.borrow();
        if let Some((tick, _)) = callbacks.as_ref() {
            // Browsers run a delay past i32::MAX at once: never wait longer than that.
            self.state.borrow_mut().timer = Some(set_timeout(tick.as_ref(), delay_ms.min(i32::MAX as u32)));
        }
    }

    /// The wait before the next try: the refresh interval, doubled per consecutive failure.
    fn backoff_ms(&self, failures: u32) -> u32 {
        let factor = 1u32 << failures.min(16);
        self.settings.refresh_ms.saturating_mul(factor).min(MAX_BACKOFF_MS.max(self.settings.refresh_ms))
    }

    /// Updates the view with what a poll came back with, and schedules the next.
    fn answered(&self, answer: Answer) {
        let previous = {
            let mut state = self.state.borrow_mut();
            state.request = None;
            state.view.take()
        };
        let (view, next) = match (answer, previous) {
            (Answer::Fresh(status, tag), _) => {
                let mut state = self.state.borrow_mut();
                state.etag = tag;
                state.failures = 0;
                (View::Ready(status, None), Some(self.settings.refresh_ms))
            }
            (Answer::Unchanged, Some(View::Ready(status, _))) => {
                self.state.borrow_mut().failures = 0;
                (View::Ready(status, None), Some(self.settings.refresh_ms))
            }
            (Answer::Unchanged, _) => {
                // A 304 without a status in hand: ask again, unconditionally.
                self.state.borrow_mut().etag = None;
                (View::Loading, Some(0))
            }
            (Answer::Final(problem), _) => (View::Failed(problem, None), None),
            (Answer::Retry(problem), previous) => {
                let failures = {
                    let mut state = self.state.borrow_mut();
                    state.failures += 1;
                    state.failures
                };
                let wait = self.backoff_ms(failures);
                let secs = wait.div_ceil(1000);
                let view = match previous {
                    Some(View::Ready(status, _)) => View::Ready(status, Some((problem, secs))),
                    _ => View::Failed(problem, Some(secs)),
                };
                (view, Some(wait))
            }
        };
        self.show(view);
        if let Some(delay) = next {
            self.schedule(delay);
        }
    }
}

/// Reads a settled request: `status` 0 means no answer came, and `body` says why.
fn answer(status: u32, tag: Option<String>, body: String) -> Answer {
    match status {
        0 => Answer::Retry(Problem::Network(body)),
        200 => match parse_status(&body) {
            Ok(status) => Answer::Fresh(Box::new(status), tag),
            Err(e) => Answer::Retry(Problem::Network(e)),
        },
        304 => Answer::Unchanged,
        401 => Answer::Final(Problem::Unauthorized),
        403 => Answer::Final(Problem::Forbidden),
        404 => Answer::Final(Problem::NotFound),
        other => Answer::Retry(Problem::Network("the server answered ".to_owned() + &decimal(other.into()))),
    }
}

/// Ids of the `<details>` currently open under `target`.
fn open_details(target: &Element) -> Vec<String> {
    let Ok(list) = target.query_selector_all("details[open]") else { return Vec::new() };
    (0..list.length())
        .filter_map(|i| list.item(i))
        // `details[open]` matches elements only: no `instanceof` check needed.
        .map(|n| n.unchecked_into::<Element>())
        .map(|e| e.id())
        .collect()
}
