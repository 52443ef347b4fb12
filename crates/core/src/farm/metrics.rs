//! What `GET /rest/mirrorfarm/…/metrics` shows, in Prometheus's text exposition format: the
//! farm's repositories by status, its mirrors by update status, its queue, and how long ago each
//! upstream server last synced.

use std::fmt::Write as _;

use super::MirroredStatus;
use crate::time::Timestamp;

/// The figures, as the store counts them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FarmMetrics {
    /// Farm repositories by status.
    pub repositories: Vec<(MirroredStatus, u64)>,
    /// Mirrors by kind (`push`, `pull`) and GitLab update status.
    pub mirrors: Vec<(String, String, u64)>,
    /// Jobs waiting or leased, by kind and state.
    pub jobs: Vec<(String, String, u64)>,
    /// When the oldest job due now was queued.
    pub oldest_due: Option<Timestamp>,
    /// Each upstream server: id, base URL, its repositories' latest sync, its latest listing.
    pub upstreams: Vec<Upstream>,
}

/// An upstream server's figures: id, base URL, its repositories' latest sync, its latest listing.
type Upstream = (String, String, Option<Timestamp>, Option<Timestamp>);

/// Which moment of an upstream server a family shows.
type Moment = fn(&Upstream) -> Option<Timestamp>;

/// A label value, escaped as the exposition format wants.
fn label(text: &str) -> String {
    text.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

/// Seconds with three decimals, from whole milliseconds (no float formatting: it would cost the
/// Worker's wasm its float-printing code).
fn seconds(now: Timestamp, then: Timestamp) -> String {
    let ms = (now.millis() - then.millis()).max(0);
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The exposition text. Every family is present (with no samples when there is nothing to count).
pub fn metrics_text(m: &FarmMetrics, now: Timestamp) -> String {
    let mut out = String::new();
    let family = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    family(&mut out, "mirrorfarm_farm_repositories", "Farm repositories by mirror status.");
    for (status, n) in &m.repositories {
        let _ = writeln!(out, "mirrorfarm_farm_repositories{{status=\"{}\"}} {n}", status.as_str());
    }
    family(&mut out, "mirrorfarm_mirrors", "Push and pull mirrors by update status.");
    for (kind, status, n) in &m.mirrors {
        let _ = writeln!(out, "mirrorfarm_mirrors{{kind=\"{}\",status=\"{}\"}} {n}", label(kind), label(status));
    }
    family(&mut out, "mirrorfarm_queue_jobs", "Jobs waiting (QUEUED) or running (LEASED), by kind.");
    for (kind, state, n) in &m.jobs {
        let _ = writeln!(out, "mirrorfarm_queue_jobs{{kind=\"{}\",state=\"{}\"}} {n}", label(kind), label(state));
    }
    family(&mut out, "mirrorfarm_queue_oldest_due_age_seconds", "Age of the oldest job due now (0: none waits).");
    let oldest = m.oldest_due.map_or_else(|| "0".to_owned(), |t| seconds(now, t));
    let _ = writeln!(out, "mirrorfarm_queue_oldest_due_age_seconds {oldest}");
    // One family per moment of each upstream server: its latest repository sync, its latest listing.
    let ages: [(&str, &str, Moment); 2] = [
        (
            "mirrorfarm_upstream_last_sync_age_seconds",
            "Seconds since each upstream server's latest completed repository sync.",
            |u| u.2,
        ),
        (
            "mirrorfarm_upstream_last_discovery_age_seconds",
            "Seconds since each upstream server was last listed.",
            |u| u.3,
        ),
    ];
    for (name, help, when) in ages {
        family(&mut out, name, help);
        for u in &m.upstreams {
            if let Some(at) = when(u) {
                let (id, base) = (label(&u.0), label(&u.1));
                let _ = writeln!(out, "{name}{{upstream=\"{id}\",base_url=\"{base}\"}} {}", seconds(now, at));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn every_family_is_typed_and_labels_are_escaped() {
        let m = FarmMetrics {
            repositories: vec![(MirroredStatus::Available, 3), (MirroredStatus::ErrorAvailable, 1)],
            mirrors: vec![("push".into(), "finished".into(), 2)],
            jobs: vec![("PULL_MIRROR".into(), "QUEUED".into(), 4)],
            oldest_due: Some(Timestamp(1_000)),
            upstreams: vec![("u1".into(), "https://bb.example/\"x\"".into(), Some(Timestamp(500)), None)],
        };
        let text = metrics_text(&m, Timestamp(3_500));
        assert!(text.contains("mirrorfarm_farm_repositories{status=\"AVAILABLE\"} 3\n"), "{text}");
        assert!(text.contains("mirrorfarm_queue_jobs{kind=\"PULL_MIRROR\",state=\"QUEUED\"} 4\n"));
        assert!(text.contains("mirrorfarm_queue_oldest_due_age_seconds 2.500\n"));
        assert!(text.contains(
            r#"mirrorfarm_upstream_last_sync_age_seconds{upstream="u1",base_url="https://bb.example/\"x\""} 3.000"#
        ));
        assert_eq!(text.matches("# TYPE ").count(), 6);
        assert!(!text.contains("last_discovery_age_seconds{"), "never listed: no sample");
    }
}
