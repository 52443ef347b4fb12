//! The widget against a real DOM in headless Chromium.
#![cfg(target_arch = "wasm32")]

use mirrorfarm_ui::render_summary;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn element() -> web_sys::Element {
    let document = web_sys::window().and_then(|w| w.document()).expect("a document");
    let el = document.create_element("div").expect("div");
    document.body().expect("body").append_child(&el).expect("attached");
    el
}

#[wasm_bindgen_test]
fn renders_failing_verdict_accessibly() {
    let el = element();
    render_summary(&el, r#"[{"update_status":"finished"},{"update_status":"failed"}]"#).expect("renders");
    assert_eq!(el.text_content().as_deref(), Some("1 of 2 mirrors failing"));
    assert_eq!(el.get_attribute("role").as_deref(), Some("status"));
    assert_eq!(el.get_attribute("data-state").as_deref(), Some("failing"));
}

#[wasm_bindgen_test]
fn renders_empty_and_rejects_garbage() {
    let el = element();
    render_summary(&el, "[]").expect("renders");
    assert_eq!(el.get_attribute("data-state").as_deref(), Some("empty"));
    assert!(render_summary(&el, "not json").is_err());
}
