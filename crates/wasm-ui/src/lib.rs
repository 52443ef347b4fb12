//! # mirrorfarm-ui
//!
//! People need to see at a glance whether a repository's mirrors are healthy, on whatever page
//! they already use. This crate is the browser widget for that, in wasm with web-sys only. For
//! now it renders the core's one-line verdict over a GitLab remote-mirror list; the full
//! `<mirrorfarm-status>` element builds on it.

use mirrorfarm_core::mirrors::{StatusSummary, UpdateStatus};
use wasm_bindgen::prelude::*;
use web_sys::Element;

/// Reads the `update_status` of each mirror in a GitLab `remote_mirrors` JSON list.
fn statuses(mirrors_json: &str) -> Result<Vec<UpdateStatus>, String> {
    let list: Vec<serde_json::Value> =
        serde_json::from_str(mirrors_json).map_err(|e| format!("not a mirror list: {e}"))?;
    list.iter()
        .map(|m| {
            let name = m.get("update_status").and_then(|s| s.as_str()).unwrap_or_default();
            UpdateStatus::parse(name).ok_or_else(|| format!("unknown update_status {name:?}"))
        })
        .collect()
}

/// Renders the verdict for a remote-mirror list into `el` as a labelled status line, and marks
/// it with `data-state` (`ok`, `failing`, `pending`, `empty`) so colour is not the only signal.
#[wasm_bindgen(js_name = renderSummary)]
pub fn render_summary(el: &Element, mirrors_json: &str) -> Result<(), JsValue> {
    let summary = StatusSummary::of(statuses(mirrors_json).map_err(|e| JsValue::from_str(&e))?);
    let state = match summary {
        StatusSummary { total: 0, .. } => "empty",
        StatusSummary { failing: 1.., .. } => "failing",
        StatusSummary { syncing: 1.., .. } | StatusSummary { never_run: 1.., .. } => "pending",
        _ => "ok",
    };
    el.set_attribute("role", "status")?;
    el.set_attribute("aria-label", "Mirror status")?;
    el.set_attribute("data-state", state)?;
    el.set_text_content(Some(&summary.headline()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_statuses_from_gitlab_json() {
        let json = r#"[{"update_status":"finished"},{"update_status":"failed"}]"#;
        assert_eq!(statuses(json), Ok(vec![UpdateStatus::Finished, UpdateStatus::Failed]));
        assert!(statuses(r#"[{"update_status":"bogus"}]"#).is_err());
        assert!(statuses("{").is_err());
    }
}
