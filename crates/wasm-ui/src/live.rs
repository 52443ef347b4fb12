//! Keeping a mounted widget current: poll the status with `If-None-Match`, back off on errors,
//! re-render relative times, and stop everything when dropped.
//!
//! The timer closure and in-flight requests hold only a `Weak` to the widget, so dropping the
//! [`Live`] handle frees it at once: its timer is cleared, its request aborted, its closure freed.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use mirrorfarm_core::status::RepositoryStatus;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, AbortSignal, Element, Headers, RequestCache, RequestInit, Response};

use crate::json::parse_status;
use crate::view::{Problem, View, render};

/// The longest wait between tries after repeated errors.
const MAX_BACKOFF_MS: u32 = 10 * 60 * 1000;

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

struct Inner {
    target: Element,
    settings: Settings,
    state: RefCell<State>,
    /// The timer's callback, kept here (not leaked) and freed with the widget.
    tick: RefCell<Option<Closure<dyn FnMut()>>>,
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
        let inner = Rc::new(Inner { target, settings, state: RefCell::default(), tick: RefCell::new(None) });
        let weak = Rc::downgrade(&inner);
        let tick = Closure::<dyn FnMut()>::new(move || {
            if weak.upgrade().is_some() {
                wasm_bindgen_futures::spawn_local(poll(weak.clone()));
            }
        });
        *inner.tick.borrow_mut() = Some(tick);
        inner.show(View::Loading);
        wasm_bindgen_futures::spawn_local(poll(Rc::downgrade(&inner)));
        Self { inner }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let mut state = self.inner.state.borrow_mut();
        if let (Some(timer), Some(window)) = (state.timer.take(), web_sys::window()) {
            window.clear_timeout_with_handle(timer);
        }
        if let Some(request) = state.request.take() {
            request.abort();
        }
        drop(state);
        self.inner.tick.borrow_mut().take();
    }
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
        let (Some(window), Some(tick)) = (web_sys::window(), self.tick.borrow().as_ref().map(|t| t.as_ref().clone()))
        else {
            return;
        };
        let delay = i32::try_from(delay_ms).unwrap_or(i32::MAX);
        if let Ok(timer) = window.set_timeout_with_callback_and_timeout_and_arguments_0(tick.unchecked_ref(), delay) {
            self.state.borrow_mut().timer = Some(timer);
        }
    }

    /// The wait before the next try: the refresh interval, doubled per consecutive failure.
    fn backoff_ms(&self, failures: u32) -> u32 {
        let factor = 1u32 << failures.min(16);
        self.settings.refresh_ms.saturating_mul(factor).min(MAX_BACKOFF_MS.max(self.settings.refresh_ms))
    }
}

/// One poll: fetch, update the view, schedule the next. Holds the widget only between awaits.
async fn poll(weak: Weak<Inner>) {
    let Some(inner) = weak.upgrade() else { return };
    let Ok(controller) = AbortController::new() else { return };
    let etag = inner.state.borrow().etag.clone();
    let request = fetch(inner.settings.clone(), etag, controller.signal());
    inner.state.borrow_mut().request = Some(controller);
    drop(inner);
    let answer = request.await;
    let Some(inner) = weak.upgrade() else { return };
    inner.state.borrow_mut().request = None;
    let previous = inner.state.borrow_mut().view.take();
    let (view, next) = match (answer, previous) {
        (Answer::Fresh(status, tag), _) => {
            let mut state = inner.state.borrow_mut();
            state.etag = tag;
            state.failures = 0;
            (View::Ready(status, None), Some(inner.settings.refresh_ms))
        }
        (Answer::Unchanged, Some(View::Ready(status, _))) => {
            inner.state.borrow_mut().failures = 0;
            (View::Ready(status, None), Some(inner.settings.refresh_ms))
        }
        (Answer::Unchanged, _) => {
            // A 304 without a status in hand: ask again, unconditionally.
            inner.state.borrow_mut().etag = None;
            (View::Loading, Some(0))
        }
        (Answer::Final(problem), _) => (View::Failed(problem, None), None),
        (Answer::Retry(problem), previous) => {
            let failures = {
                let mut state = inner.state.borrow_mut();
                state.failures += 1;
                state.failures
            };
            let wait = inner.backoff_ms(failures);
            let secs = wait.div_ceil(1000);
            let view = match previous {
                Some(View::Ready(status, _)) => View::Ready(status, Some((problem, secs))),
                _ => View::Failed(problem, Some(secs)),
            };
            (view, Some(wait))
        }
    };
    inner.show(view);
    if let Some(delay) = next {
        inner.schedule(delay);
    }
}

/// Requests the status, conditionally on the ETag held.
async fn fetch(settings: Settings, etag: Option<String>, signal: AbortSignal) -> Answer {
    let network = |e: JsValue| {
        let text = e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message()));
        Answer::Retry(Problem::Network(text.unwrap_or_else(|| "the request failed".into())))
    };
    let Some(window) = web_sys::window() else { return Answer::Final(Problem::Network("no window".into())) };
    let headers = match Headers::new() {
        Ok(h) => h,
        Err(e) => return network(e),
    };
    if let Some(token) = &settings.token {
        let _ = headers.set("Authorization", &format!("Bearer {token}"));
    }
    if let Some(tag) = &etag {
        let _ = headers.set("If-None-Match", tag);
    }
    let init = RequestInit::new();
    init.set_headers(&headers);
    // The widget revalidates itself; the browser's cache would only add a second layer.
    init.set_cache(RequestCache::NoStore);
    init.set_signal(Some(&signal));
    let response: Response = match JsFuture::from(window.fetch_with_str_and_init(&settings.url, &init)).await {
        Ok(r) => r.unchecked_into(),
        Err(e) => return network(e),
    };
    match response.status() {
        200 => {}
        304 => return Answer::Unchanged,
        401 => return Answer::Final(Problem::Unauthorized),
        403 => return Answer::Final(Problem::Forbidden),
        404 => return Answer::Final(Problem::NotFound),
        other => return Answer::Retry(Problem::Network(format!("the server answered {other}"))),
    }
    let tag = response.headers().get("ETag").ok().flatten();
    let text = match response.text() {
        Ok(promise) => JsFuture::from(promise).await,
        Err(e) => Err(e),
    };
    match text.map(|t| t.as_string().unwrap_or_default()) {
        Ok(body) => match parse_status(&body) {
            Ok(status) => Answer::Fresh(Box::new(status), tag),
            Err(e) => Answer::Retry(Problem::Network(e)),
        },
        Err(e) => network(e),
    }
}

/// Ids of the `<details>` currently open under `target`.
fn open_details(target: &Element) -> Vec<String> {
    let Ok(list) = target.query_selector_all("details[open]") else { return Vec::new() };
    (0..list.length())
        .filter_map(|i| list.item(i))
        .filter_map(|n| n.dyn_into::<Element>().ok())
        .map(|e| e.id())
        .collect()
}
