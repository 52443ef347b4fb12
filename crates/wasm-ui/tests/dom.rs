//! The widget against a real DOM in headless Chromium: every state, rendered from the status
//! API's JSON shape, and the live loop (ETags, errors, back-off, stopping) against a scripted
//! `fetch`.
#![cfg(target_arch = "wasm32")]

use mirrorfarm_core::status::RepositoryStatus;
use mirrorfarm_ui::live::{Live, Settings};
use mirrorfarm_ui::view::{Problem, View, render};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use web_sys::Element;

wasm_bindgen_test_configure!(run_in_browser);

const MIN: i64 = 60_000;
const NOW: i64 = 1_764_547_200_000; // 2025-12-01T00:00:00Z

/// A status as `GET /rest/mirrorfarm/1.0/repos/{id}/status` sends it: one mirror in sync, one
/// failed with an error, a pull mirror, a running job and a live node.
fn failing_json() -> String {
    format!(
        r#"{{"repository":{{"id":7,"projectKey":"MF","slug":"app","name":"App"}},
        "summary":{{"total":3,"failing":1,"syncing":0,"neverRun":0,"stale":false}},
        "remoteMirrors":[
          {{"id":1,"url":"https://*****:*****@gitlab.example/app.git","enabled":true,"updateStatus":"finished",
            "lastUpdateAt":{a},"lastUpdateStartedAt":{a},"lastSuccessfulUpdateAt":{a},"lastError":null}},
          {{"id":2,"url":"https://github.example/app.git","enabled":true,"updateStatus":"failed",
            "lastUpdateAt":{b},"lastUpdateStartedAt":{b},"lastSuccessfulUpdateAt":null,
            "lastError":"Some refs have diverged and have not been updated on the remote:\n\nrefs/heads/main"}}],
        "pullMirror":{{"id":7,"url":"https://*****:*****@upstream.example/app.git","enabled":true,
          "updateStatus":"finished","lastUpdateAt":{a},"lastUpdateStartedAt":{a},"lastSuccessfulUpdateAt":{a},"lastError":null}},
        "jobs":[{{"id":12,"kind":"PUSH_MIRROR","repositoryId":7,"remoteMirrorId":2,"reason":"WEBHOOK","state":"LEASED",
          "attempt":1,"enqueuedAt":{b},"notBefore":null,"leaseOwner":3,"leaseDeadline":{c}}}],
        "nodes":[{{"id":3,"name":"node-a","createdDate":0,"lastSeen":{b}}}]}}"#,
        a = NOW - 90 * MIN,
        b = NOW - 2 * MIN,
        c = NOW + 3 * MIN,
    )
}

fn parse(json: &str) -> Box<RepositoryStatus> {
    Box::new(mirrorfarm_ui::json::parse_status(json).expect("the API's shape"))
}

fn document() -> web_sys::Document {
    web_sys::window().and_then(|w| w.document()).expect("a document")
}

fn host() -> Element {
    let el = document().create_element("div").expect("div");
    document().body().expect("body").append_child(&el).expect("attached");
    el
}

fn shown(view: &View, open: &[String]) -> Element {
    let el = host();
    el.set_inner_html(&render(view, NOW, open));
    el
}

fn find(el: &Element, selector: &str) -> Element {
    el.query_selector(selector).expect("selector").unwrap_or_else(|| panic!("no {selector}"))
}

fn text(el: &Element, selector: &str) -> String {
    find(el, selector).text_content().unwrap_or_default()
}

#[wasm_bindgen_test]
fn failing_repository_reads_in_words_roles_and_times() {
    let el = shown(&View::Ready(parse(&failing_json()), None), &[]);
    let section = find(&el, "section.mf");
    assert_eq!(section.get_attribute("data-state").as_deref(), Some("failing"));
    assert_eq!(section.get_attribute("aria-labelledby").as_deref(), Some("mf-title"));
    assert_eq!(text(&el, "#mf-title"), "MF/app");
    let verdict = find(&el, ".mf-verdict");
    assert_eq!(verdict.get_attribute("role").as_deref(), Some("status"));
    assert!(verdict.text_content().unwrap_or_default().ends_with("1 of 3 mirrors failing"));
    let badges: Vec<String> = (0..3)
        .map(|i| {
            el.query_selector_all(".mf-badge").expect("all").item(i).and_then(|n| n.text_content()).unwrap_or_default()
        })
        .collect();
    assert_eq!(badges, ["✓ in sync", "✕ failed", "✓ in sync"]);
    // Relative time shown, exact time on hover and for assistive technology.
    let t = find(&el, ".mf-times time");
    assert_eq!(t.text_content().as_deref(), Some("2 h ago"));
    assert_eq!(t.get_attribute("title").as_deref(), Some("2025-11-30 22:30:00 UTC"));
    assert_eq!(t.get_attribute("datetime").as_deref(), Some("2025-11-30T22:30:00.000Z"));
    // The error is a disclosure: closed, keyboard-focusable, its first line as the summary.
    let details = find(&el, "details.mf-error");
    assert!(!details.has_attribute("open"));
    let summary: web_sys::HtmlElement = find(&el, "details.mf-error summary").dyn_into().expect("html");
    summary.focus().expect("focusable");
    assert_eq!(document().active_element().as_ref(), Some(summary.as_ref()));
    assert!(summary.text_content().unwrap_or_default().contains("Some refs have diverged"));
    summary.click();
    assert!(details.has_attribute("open"), "opens like any disclosure");
    assert!(text(&el, "details.mf-error pre").contains("refs/heads/main"));
    assert!(text(&el, ".mf-jobs").contains("running on node-a"));
    assert!(text(&el, ".mf-nodes").contains("node-a"));
}

#[wasm_bindgen_test]
fn every_other_state_is_designed() {
    let in_sync = failing_json()
        .replace(r#""updateStatus":"failed""#, r#""updateStatus":"finished""#)
        .replace(r#""failing":1"#, r#""failing":0"#);
    let el = shown(&View::Ready(parse(&in_sync), None), &[]);
    assert_eq!(find(&el, "section").get_attribute("data-state").as_deref(), Some("ok"));
    assert!(text(&el, ".mf-verdict").ends_with("All 3 mirrors in sync"));

    let stale = in_sync.replace(r#""stale":false"#, r#""stale":true"#);
    let el = shown(&View::Ready(parse(&stale), None), &[]);
    assert_eq!(find(&el, "section").get_attribute("data-state").as_deref(), Some("stale"));
    assert!(text(&el, ".mf-verdict").contains("Stale: no farm node"));

    let empty = r#"{"repository":{"id":8,"projectKey":"MF","slug":"empty","name":"Empty"},
        "summary":{"total":0,"failing":0,"syncing":0,"neverRun":0,"stale":false},
        "remoteMirrors":[],"pullMirror":null,"jobs":[],"nodes":[]}"#;
    let el = shown(&View::Ready(parse(empty), None), &[]);
    assert_eq!(find(&el, "section").get_attribute("data-state").as_deref(), Some("empty"));
    assert!(text(&el, ".mf-verdict").ends_with("No mirrors"));
    assert_eq!(el.query_selector_all(".mf-none").expect("all").length(), 4, "each part says it is empty");

    let el = shown(&View::Loading, &[]);
    assert_eq!(find(&el, "section").get_attribute("aria-busy").as_deref(), Some("true"));
    assert!(text(&el, ".mf-verdict").contains("Loading"));

    for (problem, state, words) in [
        (
            Problem::Network("Failed to fetch".into()),
            "error",
            "Couldn’t load mirror status: Failed to fetch. Retrying in 60 s.",
        ),
        (Problem::Unauthorized, "unauthorized", "Not authorized"),
        (Problem::Forbidden, "unauthorized", "may not read"),
        (Problem::NotFound, "not-found", "No such repository"),
    ] {
        let retry = matches!(problem, Problem::Network(_)).then_some(60);
        let el = shown(&View::Failed(problem, retry), &[]);
        assert_eq!(find(&el, "section").get_attribute("data-state").as_deref(), Some(state));
        assert_eq!(find(&el, ".mf-verdict").get_attribute("role").as_deref(), Some("alert"));
        assert!(text(&el, ".mf-verdict").contains(words), "{state}");
    }

    // A refresh that failed keeps the old status on screen, marked as such.
    let el = shown(&View::Ready(parse(&failing_json()), Some((Problem::Network("offline".into()), 30))), &[]);
    assert!(text(&el, ".mf-problem").contains("Retrying in 30 s. Showing the last status received."));
}

#[wasm_bindgen_test]
fn open_errors_stay_open_across_renders() {
    let el = shown(&View::Ready(parse(&failing_json()), None), &["mf-err-2".into()]);
    assert!(find(&el, "#mf-err-2").has_attribute("open"));
}

/// Replaces `window.fetch` with one answering from `responses` in turn (the last one repeats) and
/// recording each call's URL and headers in `window.__mfCalls`.
fn script_fetch(responses: &str) {
    let install = js_sys::Function::new_with_args(
        "responses",
        r#"const calls = []; window.__mfCalls = calls;
           window.fetch = (url, init) => {
             calls.push({ url, headers: Object.fromEntries(init.headers.entries()) });
             const r = responses.length > 1 ? responses.shift() : responses[0];
             if (r.fail) return Promise.reject(new TypeError("Failed to fetch"));
             return Promise.resolve(new Response(r.status === 304 ? null : r.body, { status: r.status, headers: r.headers || {} }));
           };"#,
    );
    let list = js_sys::JSON::parse(responses).expect("responses");
    install.call1(&JsValue::NULL, &list).expect("installed");
}

fn calls() -> js_sys::Array {
    js_sys::Reflect::get(&web_sys::window().expect("window"), &"__mfCalls".into()).expect("calls").unchecked_into()
}

fn call_header(i: u32, name: &str) -> Option<String> {
    let headers = js_sys::Reflect::get(&calls().get(i), &"headers".into()).expect("headers");
    js_sys::Reflect::get(&headers, &name.into()).ok().and_then(|v| v.as_string())
}

async fn sleep(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        web_sys::window()
            .expect("window")
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
            .expect("timer");
    });
    JsFuture::from(promise).await.expect("slept");
}

fn settings(refresh_ms: u32) -> Settings {
    Settings {
        url: "https://mf.example/rest/mirrorfarm/1.0/repos/7/status".into(),
        token: Some("mfp_status".into()),
        refresh_ms,
    }
}

#[wasm_bindgen_test]
async fn polls_with_etags_then_stops_on_unauthorized() {
    let body = serde_json::to_string(&failing_json()).expect("string");
    script_fetch(&format!(
        r#"[{{"status":200,"body":{body},"headers":{{"ETag":"W/\"v1\""}}}},{{"status":304}},{{"status":401,"body":"{{}}"}}]"#
    ));
    let el = host();
    let live = Live::start(el.clone(), settings(40));
    assert!(el.text_content().unwrap_or_default().contains("Loading"), "loading is shown at once");
    sleep(300).await;
    assert_eq!(calls().length(), 3, "200, 304, then 401 which ends polling");
    assert_eq!(call_header(0, "authorization").as_deref(), Some("Bearer mfp_status"));
    assert_eq!(call_header(0, "if-none-match"), None);
    assert_eq!(call_header(1, "if-none-match").as_deref(), Some("W/\"v1\""));
    assert!(el.text_content().unwrap_or_default().contains("Not authorized"));
    drop(live);
}

#[wasm_bindgen_test]
async fn backs_off_on_errors_keeps_old_data_and_stops_when_dropped() {
    let body = serde_json::to_string(&failing_json()).expect("string");
    script_fetch(&format!(r#"[{{"status":200,"body":{body}}},{{"fail":true}},{{"status":503,"body":""}}]"#));
    let el = host();
    let live = Live::start(el.clone(), settings(50));
    // t=0 ok, t≈50 network error (next in 100), t≈150 503 (next in 200), t≈350 …
    sleep(250).await;
    assert_eq!(calls().length(), 3, "intervals double after each error");
    let shown = el.text_content().unwrap_or_default();
    assert!(shown.contains("1 of 3 mirrors failing"), "old status kept: {shown}");
    assert!(shown.contains("the server answered 503"), "{shown}");
    drop(live);
    let after_drop = calls().length();
    sleep(600).await;
    assert_eq!(calls().length(), after_drop, "no timer survives the widget");
}

fn memory_bytes() -> u32 {
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    memory.buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length()
}

#[wasm_bindgen_test]
fn memory_stays_flat_over_thousands_of_refreshes() {
    let el = host();
    let json = failing_json();
    let refresh = || {
        let status = parse(&json);
        let open = vec!["mf-err-2".to_owned()];
        el.set_inner_html(&render(&View::Ready(status, None), NOW, &open));
    };
    for _ in 0..200 {
        refresh();
    }
    let warmed = memory_bytes();
    for _ in 0..3000 {
        refresh();
    }
    let grown = memory_bytes() - warmed;
    assert!(grown <= 64 * 1024, "memory grew by {grown} bytes over 3000 refreshes");
}
