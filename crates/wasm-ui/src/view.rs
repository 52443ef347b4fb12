//! What the widget shows, as HTML text: a pure function of the state and the clock, so every
//! state is testable natively and the DOM is written in one call.
//!
//! Markup is semantic (a labelled `section`, lists, `time`, `details`), each status carries a
//! word and a symbol besides its colour, and colours are CSS custom properties a host page can
//! override (`--mf-ok`, `--mf-fail`, …), with light and dark defaults.

use mirrorfarm_core::forks::{RefSyncStatus, RejectedRef};
use mirrorfarm_core::mirrors::{UpdateStatus, Verdict};
use mirrorfarm_core::queue::{Job, JobKind, JobState};
use mirrorfarm_core::status::FarmStatus;
use mirrorfarm_core::status::{MirrorStatus, RepositoryStatus};
use mirrorfarm_core::text::decimal;
use mirrorfarm_core::time::Timestamp;

/// Why the status could not be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The request failed before an answer (offline, DNS, CORS refused) or the answer was not a status.
    Network(String),
    /// 401: no token, or a wrong or expired one.
    Unauthorized,
    /// 403: the token may not read this repository.
    Forbidden,
    /// 404: no such repository (or hidden from this token).
    NotFound,
}

/// The widget's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// The first answer is on its way.
    Loading,
    /// A status, and the problem the latest refresh ran into, if any (with the seconds until
    /// the next try), so old data is never passed off as fresh.
    Ready(Box<RepositoryStatus>, Option<(Problem, u32)>),
    /// No status yet, only a problem; the next try is in the given seconds (`None`: no retry).
    Failed(Problem, Option<u32>),
}

/// Renders `view` at `now_ms`, with the `<details>` whose ids are in `open` left open.
pub fn render(view: &View, now_ms: i64, open: &[String]) -> String {
    let mut h = Html(String::with_capacity(4096));
    h.raw("<style>");
    h.raw(CSS);
    h.raw("</style>");
    match view {
        View::Loading => {
            h.raw(r#"<section class="mf" data-state="loading" aria-busy="true" aria-label="Mirror status"><p class="mf-verdict" role="status"><span class="mf-icon" aria-hidden="true">…</span> Loading mirror status…</p></section>"#);
        }
        View::Failed(problem, retry) => {
            h.raw(r#"<section class="mf" data-state=""#);
            h.raw(problem_state(problem));
            h.raw(r#"" aria-label="Mirror status"><p class="mf-verdict" role="alert"><span class="mf-icon" aria-hidden="true">!</span> "#);
            problem_text(&mut h, problem, *retry);
            h.raw("</p></section>");
        }
        View::Ready(status, problem) => ready(&mut h, status, problem.as_ref(), now_ms, open),
    }
    h.0
}

fn ready(h: &mut Html, s: &RepositoryStatus, problem: Option<&(Problem, u32)>, now: i64, open: &[String]) {
    let verdict = s.summary.verdict();
    h.raw(r#"<section class="mf" data-state=""#);
    h.raw(verdict.as_str());
    h.raw(r#"" aria-labelledby="mf-title"><header class="mf-head"><h2 id="mf-title" class="mf-title">"#);
    h.text(&s.repository.project_key);
    h.raw("/");
    h.text(&s.repository.slug);
    h.raw(r#"</h2><p class="mf-verdict" role="status"><span class="mf-icon" aria-hidden="true">"#);
    h.raw(verdict_symbol(verdict));
    h.raw("</span> ");
    h.text(&s.summary.headline());
    if let Some(fork) = &s.fork {
        h.raw(" · ");
        h.text(&fork.headline());
    }
    h.raw("</p></header>");
    if let Some(banner) = s.banner.as_deref().filter(|b| !b.is_empty()) {
        h.raw(r#"<p class="mf-banner" role="note">"#);
        h.text(banner);
        h.raw("</p>");
    }
    if let Some((problem, retry)) = problem {
        h.raw(r#"<p class="mf-problem" role="alert">"#);
        problem_text(h, problem, Some(*retry));
        h.raw(" Showing the last status received.</p>");
    }

    section(h, "Push mirrors", "mf-list", &s.remote_mirrors, "No push mirrors.", |h, m| {
        mirror(h, m, &("mf-err-".to_owned() + &decimal(m.id)), now, open);
    });
    let no_upstream = "No upstream: this repository is not pulled from anywhere.";
    section(h, "Pull mirror", "mf-list", s.pull_mirror.as_slice(), no_upstream, |h, m| {
        mirror(h, m, "mf-err-pull", now, open);
    });
    if let Some(fork) = &s.fork {
        fork_sync(h, fork, now, open);
    }
    if let Some(farm) = &s.farm {
        farm_standing(h, farm, now);
    }
    section(h, "Queue", "mf-list mf-jobs", &s.jobs, "Nothing queued.", |h, job| queued_job(h, s, job, now));
    section(h, "Farm nodes", "mf-list mf-nodes", &s.nodes, "No farm node has reported recently.", |h, node| {
        h.raw("<li>");
        h.text(&node.name);
        if let Some(seen) = node.last_seen {
            h.raw(" · seen ");
            time(h, seen, now);
        }
        h.raw("</li>");
    });
    h.raw("</section>");
}

/// A titled part of the view: a list of `items`, or the `empty` line when there are none.
fn section<T>(h: &mut Html, title: &str, class: &str, items: &[T], empty: &str, item: impl Fn(&mut Html, &T)) {
    h.raw(r#"<h3 class="mf-sub">"#);
    h.raw(title);
    h.raw("</h3>");
    if items.is_empty() {
        h.raw(r#"<p class="mf-none">"#);
        h.raw(empty);
        h.raw("</p>");
        return;
    }
    h.raw(r#"<ul class=""#);
    h.raw(class);
    h.raw(r#"">"#);
    for i in items {
        item(h, i);
    }
    h.raw("</ul>");
}

fn mirror(h: &mut Html, m: &MirrorStatus, error_id: &str, now: i64, open: &[String]) {
    let (state, symbol, word) = if m.enabled { status_badge(m.update_status) } else { ("disabled", "–", "disabled") };
    h.raw(r#"<li class="mf-mirror"><span class="mf-badge" data-status=""#);
    h.raw(state);
    h.raw(r#""><span aria-hidden="true">"#);
    h.raw(symbol);
    h.raw("</span> ");
    h.raw(word);
    h.raw(r#"</span> <span class="mf-url">"#);
    h.text(&m.url);
    h.raw(r#"</span><span class="mf-times">Last success: "#);
    match m.last_successful_update_at {
        Some(at) => time(h, at, now),
        None => h.raw("never"),
    }
    h.raw(" · last attempt: ");
    match m.last_update_started_at.max(m.last_update_at) {
        Some(at) => time(h, at, now),
        None => h.raw("never"),
    }
    h.raw("</span>");
    if let Some(error) = m.last_error.as_deref().filter(|e| !e.is_empty()) {
        h.raw(r#"<details class="mf-error" id=""#);
        h.text(error_id);
        h.raw(if open.iter().any(|o| o == error_id) { r#"" open>"# } else { r#"">"# });
        h.raw("<summary>Last error: ");
        let line = first_line(error);
        h.text(line);
        if line.len() < error.len() {
            h.raw("…");
        }
        h.raw("</summary><pre>");
        h.text(error);
        h.raw("</pre></details>");
    }
    h.raw("</li>");
}

/// A farm repository's standing: its upstream server, its mirror status, and whether its copy's
/// hash equals the upstream's.
fn farm_standing(h: &mut Html, f: &FarmStatus, now: i64) {
    h.raw(r#"<h3 class="mf-sub">Farm</h3><p class="mf-farm">Mirrors <span class="mf-url">"#);
    h.text(&f.upstream);
    h.raw("</span> · ");
    h.text(&words(&f.status));
    h.raw(" · last sync: ");
    match f.last_sync {
        Some(at) => time(h, at, now),
        None => h.raw("never"),
    }
    h.raw(match f.in_sync() {
        Some(true) => r#" · <span class="mf-hash" data-match="yes"><span aria-hidden="true">✓</span> hashes match the upstream</span>"#,
        Some(false) => r#" · <span class="mf-hash" data-match="no"><span aria-hidden="true">✗</span> content differs from the upstream</span>"#,
        None => r#" · <span class="mf-hash">not compared yet</span>"#,
    });
    h.raw("</p>");
}

/// A fork's sync with its origin: on or off, the last sync, and the refs out of step behind a
/// disclosure (the counts are in the verdict line).
fn fork_sync(h: &mut Html, f: &RefSyncStatus, now: i64, open: &[String]) {
    h.raw(r#"<h3 class="mf-sub">Fork sync</h3><p class="mf-fork">"#);
    h.raw(match (f.available, f.enabled) {
        (false, _) => "Unavailable",
        (true, true) => "Enabled",
        (true, false) => "Disabled",
    });
    if let Some(reason) = &f.unavailable_reason {
        h.raw(": ");
        h.text(reason);
    }
    h.raw(" · last sync: ");
    match f.last_sync {
        Some(at) => time(h, at, now),
        None => h.raw("never"),
    }
    if let Some(error) = &f.last_error {
        h.raw(" · last error: ");
        h.text(first_line(error));
    }
    h.raw("</p>");
    // Three lists walked in turn (no chained iterator: its adapters cost the widget bytes).
    let lists: [&[RejectedRef]; 3] = [&f.ahead_refs, &f.diverged_refs, &f.orphaned_refs];
    let count = lists.iter().map(|l| l.len()).sum::<usize>();
    if count == 0 {
        return;
    }
    let id = "mf-fork-refs";
    h.raw(r#"<details class="mf-fork-refs" id=""#);
    h.raw(id);
    h.raw(if open.iter().any(|o| o == id) { r#"" open>"# } else { r#"">"# });
    h.raw("<summary>");
    h.raw(&decimal(count as i64));
    h.raw(if count == 1 { " ref out of step" } else { " refs out of step" });
    h.raw(r#"</summary><ul class="mf-list">"#);
    for r in lists.into_iter().flatten() {
        h.raw("<li>");
        h.text(&r.display_id);
        h.raw(if r.tag { " (tag) · " } else { " · " });
        h.raw(r.state.as_str());
        h.raw("</li>");
    }
    h.raw("</ul></details>");
}

fn queued_job(h: &mut Html, s: &RepositoryStatus, job: &Job, now: i64) {
    h.raw("<li>");
    h.raw(match job.kind {
        JobKind::PushMirror => "Push",
        JobKind::PullMirror => "Pull",
        JobKind::ForkSync => "Fork sync",
        JobKind::Discover => "Discovery",
        JobKind::UpstreamPoll => "Hash poll",
        JobKind::SendMail => "Mail",
        JobKind::MigrationExport => "Export",
        JobKind::MigrationImport => "Import",
        JobKind::MeshMove => "Move",
        JobKind::SupportZip => "Support zip",
    });
    if let Some(id) = job.remote_mirror_id {
        h.raw(" to ");
        let url = s.remote_mirrors.iter().find(|m| m.id == id).map(|m| m.url.as_str());
        h.text(url.unwrap_or("a removed mirror"));
    }
    h.raw(" (");
    h.text(&words(job.reason.as_str()));
    h.raw(")");
    match (job.state, job.lease_owner) {
        (JobState::Leased, Some(owner)) => {
            h.raw(" · running on ");
            let name = s.nodes.iter().find(|n| n.id == owner).map(|n| n.name.as_str());
            h.text(name.unwrap_or("a silent node"));
        }
        _ => {
            h.raw(" · queued ");
            time(h, job.enqueued_at, now);
        }
    }
    if job.current_try() > 1 {
        h.raw(" · try ");
        h.raw(&decimal(job.current_try().into()));
    }
    h.raw("</li>");
}

/// A `<time>` showing how long ago `at` was, with the exact UTC time on hover and for readers.
fn time(h: &mut Html, at: i64, now: i64) {
    let iso = Timestamp(at).to_iso8601();
    h.raw(r#"<time datetime=""#);
    h.raw(&iso);
    h.raw(r#"" title=""#);
    // "2026-11-30T22:34:00.000Z" → "2026-11-30 22:34:00 UTC" (`get`, not slicing: no panic path).
    h.raw(iso.get(..10).unwrap_or_default());
    h.raw(" ");
    h.raw(iso.get(11..19).unwrap_or_default());
    h.raw(" UTC");
    h.raw(r#"">"#);
    h.raw(&relative(now - at));
    h.raw("</time>");
}

/// "just now", "5 min ago", "3 h ago", "2 days ago"; times ahead (clock skew) read "just now".
pub fn relative(ago_ms: i64) -> String {
    let s = ago_ms / 1000;
    match s {
        ..=44 => "just now".to_owned(),
        45..=3_599 => decimal((s + 30) / 60) + " min ago",
        3_600..=86_399 => decimal((s + 1_800) / 3_600) + " h ago",
        _ => {
            let days = (s + 43_200) / 86_400;
            decimal(days) + if days == 1 { " day ago" } else { " days ago" }
        }
    }
}

fn status_badge(status: UpdateStatus) -> (&'static str, &'static str, &'static str) {
    match status {
        UpdateStatus::Finished => ("ok", "✓", "in sync"),
        UpdateStatus::Failed => ("failing", "✕", "failed"),
        UpdateStatus::ToRetry => ("failing", "↻", "failed, will retry"),
        UpdateStatus::Started => ("syncing", "⟳", "syncing"),
        UpdateStatus::None => ("pending", "○", "not synced yet"),
    }
}

fn verdict_symbol(v: Verdict) -> &'static str {
    match v {
        Verdict::Failing => "✕",
        Verdict::Stale => "⌛",
        Verdict::Syncing => "⟳",
        Verdict::Pending => "○",
        Verdict::InSync => "✓",
        Verdict::Empty => "–",
    }
}

fn problem_state(p: &Problem) -> &'static str {
    match p {
        Problem::Network(_) => "error",
        Problem::Unauthorized | Problem::Forbidden => "unauthorized",
        Problem::NotFound => "not-found",
    }
}

fn problem_text(h: &mut Html, p: &Problem, retry: Option<u32>) {
    match p {
        Problem::Network(detail) => {
            h.raw("Couldn’t load mirror status: ");
            h.text(detail);
            h.raw(".");
        }
        Problem::Unauthorized => {
            h.raw("Not authorized: the status token is missing, wrong or expired.");
        }
        Problem::Forbidden => h.raw("This token may not read this repository’s status."),
        Problem::NotFound => h.raw("No such repository, or this token cannot see it."),
    }
    if let Some(secs) = retry {
        h.raw(" Retrying in ");
        h.raw(&decimal(secs.into()));
        h.raw(" s.");
    }
}

/// The first line (as `str::lines` reads it), cut at 100 characters.
fn first_line(text: &str) -> &str {
    // By hand: `lines()` costs the widget a kilobyte.
    let line = match text.bytes().position(|b| b == b'\n') {
        Some(end) => text.get(..end).map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(text),
        None => text,
    };
    line.char_indices().nth(100).and_then(|(cut, _)| line.get(..cut)).unwrap_or(line)
}

/// A wire name in words: `ERROR_AVAILABLE` → "error available".
fn words(name: &str) -> String {
    name.chars().map(|c| if c == '_' { ' ' } else { c.to_ascii_lowercase() }).collect()
}

/// An HTML string being built: [`Html::raw`] for our markup, [`Html::text`] for data, escaped.
struct Html(String);

impl Html {
    fn raw(&mut self, markup: &str) {
        self.0.push_str(markup);
    }

    fn text(&mut self, text: &str) {
        for c in text.chars() {
            match c {
                '&' => self.0.push_str("&amp;"),
                '<' => self.0.push_str("&lt;"),
                '>' => self.0.push_str("&gt;"),
                '"' => self.0.push_str("&quot;"),
                '\'' => self.0.push_str("&#39;"),
                c => self.0.push(c),
            }
        }
    }
}

/// The widget's styles. Colours and fonts are `--mf-*` custom properties with light defaults
/// and dark ones under `prefers-color-scheme: dark`; a host page sets them to restyle.
const CSS: &str = "\
.mf{--_bg:var(--mf-bg,#fff);--_fg:var(--mf-fg,#1f2328);--_muted:var(--mf-muted,#59636e);\
--_line:var(--mf-border,#d1d9e0);--_ok:var(--mf-ok,#1a7f37);--_fail:var(--mf-fail,#cf222e);\
--_warn:var(--mf-warn,#9a6700);--_busy:var(--mf-busy,#0969da);\
font:var(--mf-font,14px/1.45 system-ui,sans-serif);color:var(--_fg);background:var(--_bg);\
border:1px solid var(--_line);border-radius:8px;padding:12px 16px;max-width:48rem}\
@media (prefers-color-scheme:dark){.mf{--_bg:var(--mf-bg,#0d1117);--_fg:var(--mf-fg,#e6edf3);\
--_muted:var(--mf-muted,#9198a1);--_line:var(--mf-border,#3d444d);--_ok:var(--mf-ok,#3fb950);\
--_fail:var(--mf-fail,#f85149);--_warn:var(--mf-warn,#d29922);--_busy:var(--mf-busy,#4493f8)}}\
.mf-head{border-bottom:1px solid var(--_line);padding-bottom:8px;margin-bottom:4px}\
.mf-title{font-size:1em;margin:0;color:var(--_muted);font-weight:600}\
.mf-verdict{font-size:1.15em;font-weight:600;margin:2px 0 0}\
.mf[data-state=ok] .mf-verdict{color:var(--_ok)}\
.mf[data-state=failing] .mf-verdict,.mf[data-state=error] .mf-verdict,\
.mf[data-state=unauthorized] .mf-verdict,.mf[data-state=not-found] .mf-verdict{color:var(--_fail)}\
.mf[data-state=stale] .mf-verdict,.mf[data-state=pending] .mf-verdict{color:var(--_warn)}\
.mf[data-state=syncing] .mf-verdict{color:var(--_busy)}\
.mf-problem{border-left:3px solid var(--_warn);padding:2px 8px;margin:8px 0}\
.mf-banner{border-left:3px solid var(--_accent,#0052cc);padding:2px 8px;margin:8px 0}\
.mf-sub{font-size:.8em;text-transform:uppercase;letter-spacing:.05em;color:var(--_muted);margin:12px 0 4px}\
.mf-list{list-style:none;margin:0;padding:0}.mf-list>li{padding:4px 0;border-top:1px solid var(--_line)}\
.mf-list>li:first-child{border-top:0}.mf-none{margin:0;color:var(--_muted)}\
.mf-badge{display:inline-block;font-size:.85em;font-weight:600;border:1px solid currentColor;\
border-radius:1em;padding:0 .6em;margin-right:.4em}\
.mf-badge[data-status=ok]{color:var(--_ok)}.mf-badge[data-status=failing]{color:var(--_fail)}\
.mf-badge[data-status=syncing]{color:var(--_busy)}.mf-badge[data-status=pending],\
.mf-badge[data-status=disabled]{color:var(--_muted)}\
.mf-url{font-family:ui-monospace,monospace;font-size:.9em;word-break:break-all}\
.mf-times{display:block;color:var(--_muted);font-size:.85em}\
.mf time{text-decoration:underline dotted}\
.mf-error{margin-top:4px}.mf-error summary{cursor:pointer;color:var(--_fail);font-size:.9em}\
.mf-error summary:focus-visible{outline:2px solid var(--_busy);outline-offset:2px}\
.mf-error pre{white-space:pre-wrap;margin:4px 0;padding:6px 8px;border:1px solid var(--_line);border-radius:4px}";

#[cfg(test)]
mod tests {
    use mirrorfarm_core::mirrors::StatusSummary;
    use mirrorfarm_core::nodes::NodeDto;
    use mirrorfarm_core::queue::JobReason;
    use mirrorfarm_core::status::RepositoryName;

    use super::*;

    const MIN: i64 = 60_000;

    pub(crate) fn status() -> RepositoryStatus {
        let mirror = |id, update_status, error: Option<&str>| MirrorStatus {
            id,
            url: format!("https://*****:*****@git{id}.example/app.git"),
            enabled: true,
            update_status,
            last_update_at: Some(50 * MIN),
            last_update_started_at: Some(49 * MIN),
            last_successful_update_at: Some(10 * MIN),
            last_error: error.map(str::to_owned),
        };
        RepositoryStatus {
            repository: RepositoryName { id: 7, project_key: "MF".into(), slug: "app".into(), name: "App".into() },
            summary: StatusSummary::of([UpdateStatus::Finished, UpdateStatus::Failed]),
            remote_mirrors: vec![
                mirror(1, UpdateStatus::Finished, None),
                mirror(2, UpdateStatus::Failed, Some("Some refs have diverged: refs/heads/<main>\nsecond line")),
            ],
            pull_mirror: None,
            jobs: vec![Job {
                id: 9,
                kind: JobKind::PushMirror,
                repository_id: Some(7),
                upstream_id: None,
                remote_mirror_id: Some(2),
                reason: JobReason::Webhook,
                state: JobState::Leased,
                attempt: 2,
                enqueued_at: 55 * MIN,
                not_before: None,
                lease_owner: Some(3),
                lease_deadline: Some(70 * MIN),
                lease_id: None,
                payload: None,
                outcome: None,
                message: None,
            }],
            nodes: vec![NodeDto { id: 3, name: "node-a".into(), created_date: 0, last_seen: Some(59 * MIN) }],
            fork: None,
            farm: None,
            banner: None,
        }
    }

    #[test]
    fn the_banner_is_shown_as_text() {
        let with = status().with_banner(Some("Maintenance <tonight>".into()));
        let html = render(&View::Ready(Box::new(with), None), 60 * MIN, &[]);
        assert!(html.contains(r#"<p class="mf-banner" role="note">Maintenance &lt;tonight&gt;</p>"#), "{html}");
        let html = render(&View::Ready(Box::new(status()), None), 60 * MIN, &[]);
        assert!(!html.contains(r#"class="mf-banner""#));
    }

    #[test]
    fn a_farm_repository_shows_its_upstream_status_and_whether_hashes_match() {
        let farm = |ours: &str, theirs: &str| FarmStatus {
            upstream: "https://bb.example".into(),
            status: "AVAILABLE".into(),
            content_hash: Some(ours.into()),
            upstream_content_hash: Some(theirs.into()),
            last_sync: Some(59 * MIN),
        };
        let html = render(&View::Ready(Box::new(status().with_farm(Some(farm("a", "a")))), None), 60 * MIN, &[]);
        assert!(html.contains("Mirrors <span class=\"mf-url\">https://bb.example</span> · available"), "{html}");
        assert!(html.contains(r#"data-match="yes""#) && html.contains("hashes match the upstream"));
        let html = render(&View::Ready(Box::new(status().with_farm(Some(farm("a", "b")))), None), 60 * MIN, &[]);
        assert!(html.contains(r#"data-match="no""#) && html.contains("content differs from the upstream"));
        let html = render(&View::Ready(Box::new(status()), None), 60 * MIN, &[]);
        assert!(!html.contains("mf-farm"));
    }

    #[test]
    fn a_forks_sync_shows_counts_in_the_verdict_and_refs_behind_a_disclosure() {
        use mirrorfarm_core::forks::RefSyncState;
        let refs = vec![
            ("refs/heads/docs".to_owned(), RefSyncState::Diverged),
            ("refs/tags/v1".to_owned(), RefSyncState::Ahead),
            ("refs/heads/old".to_owned(), RefSyncState::Orphaned),
        ];
        let fork = RefSyncStatus::new(true, true, Some(58 * MIN), refs);
        let html = render(&View::Ready(Box::new(status().with_fork(Some(fork))), None), 60 * MIN, &[]);
        assert!(html.contains("fork: 1 ahead, 1 diverged, 1 orphaned"), "{html}");
        assert!(html.contains("Enabled · last sync: <time"));
        assert!(
            html.contains(r#"<details class="mf-fork-refs" id="mf-fork-refs"><summary>3 refs out of step</summary>"#)
        );
        assert!(html.contains("<li>v1 (tag) · AHEAD</li>") && html.contains("<li>old · ORPHANED</li>"));
        let off = RefSyncStatus::new(true, false, None, Vec::new());
        let html = render(&View::Ready(Box::new(status().with_fork(Some(off))), None), 60 * MIN, &[]);
        assert!(html.contains("fork sync off") && html.contains("Disabled · last sync: never"));
        assert!(!html.contains("mf-fork-refs"));
    }

    #[test]
    fn ready_view_says_everything_in_words_and_escapes_data() {
        let html = render(&View::Ready(Box::new(status()), None), 60 * MIN, &[]);
        assert!(html.contains(r#"data-state="failing""#));
        assert!(html.contains("1 of 2 mirrors failing"));
        assert!(html.contains("✕</span> failed</span>"), "a word beside the colour");
        assert!(html.contains("refs/heads/&lt;main&gt;"), "data is escaped");
        assert!(!html.contains("<main>"));
        assert!(html.contains(
            r#"<time datetime="1970-01-01T00:10:00.000Z" title="1970-01-01 00:10:00 UTC">50 min ago</time>"#
        ));
        assert!(html.contains("running on node-a") && html.contains("(webhook)") && html.contains("try 2"));
        assert!(html.contains(r#"<details class="mf-error" id="mf-err-2">"#));
        assert!(html.contains("No upstream"));
        let reopened = render(&View::Ready(Box::new(status()), None), 60 * MIN, &["mf-err-2".into()]);
        assert!(reopened.contains(r#"id="mf-err-2" open>"#));
    }

    #[test]
    fn problems_are_shown_not_blank() {
        let stale_data =
            render(&View::Ready(Box::new(status()), Some((Problem::Network("offline".into()), 20))), 0, &[]);
        assert!(stale_data.contains("Couldn’t load mirror status: offline. Retrying in 20 s. Showing the last status"));
        let html = render(&View::Failed(Problem::Unauthorized, None), 0, &[]);
        assert!(html.contains(r#"data-state="unauthorized""#) && html.contains("Not authorized"));
        assert!(render(&View::Loading, 0, &[]).contains(r#"aria-busy="true""#));
    }

    #[test]
    fn relative_times() {
        assert_eq!(relative(-5_000), "just now");
        assert_eq!(relative(90_000), "2 min ago");
        assert_eq!(relative(3 * 3_600_000), "3 h ago");
        assert_eq!(relative(86_400_000), "1 day ago");
        assert_eq!(relative(10 * 86_400_000), "10 days ago");
    }
}
