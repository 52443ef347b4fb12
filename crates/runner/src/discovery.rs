//! Discovery: a node lists an upstream server's projects and their repositories, every page,
//! over the server's own REST API (Bitbucket Data Center, GitLab, Gitea/Forgejo), and reports
//! them; the edge decides what the farm then holds (`mirrorfarm_core::farm::plan_discovery`).
//!
//! Each kind is a pair of pure readers (one page of projects, one page of repositories) and the
//! paging its API uses; the readers are unit-tested on the APIs' own JSON.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use mirrorfarm_core::farm::{
    DiscoveredRepository, LeasedDiscovery, ListedHash, PolledRefs, RefPollTarget, UpstreamType,
};
use mirrorfarm_core::urls::scrub_text;
use serde_json::Value;

/// Why a listing failed: it is reported, and nothing is removed from the farm.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscoveryError {
    /// The upstream answered with an error status.
    #[error("the upstream answered {status} to {what}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// What was asked for.
        what: String,
    },
    /// The upstream could not be reached.
    #[error("the upstream could not be reached: {0}")]
    Transport(String),
    /// An answer was not the API's JSON.
    #[error("the upstream's answer to {0} is not what its API sends")]
    Unreadable(String),
    /// The node is stopping.
    #[error("cancelled")]
    Cancelled,
}

/// A poll of an upstream that publishes no content hashes: each leased repository's refs listed
/// upstream (`git ls-remote`), `concurrency` at a time, with the fingerprint a pull would record
/// (the edge pulls only those that moved). One that cannot be listed is reported without a
/// fingerprint: the edge pulls it, and that pull records why. `Err(Cancelled)` if the node
/// stops meanwhile (checked by the calling thread, which lists too, between repositories).
pub(crate) fn poll_refs(
    targets: &[RefPollTarget],
    concurrency: usize,
    cancelled: &dyn Fn() -> bool,
) -> Result<Vec<PolledRefs>, DiscoveryError> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let found: Mutex<Vec<PolledRefs>> = Mutex::new(Vec::with_capacity(targets.len()));
    let take = || if stop.load(Ordering::SeqCst) { None } else { targets.get(next.fetch_add(1, Ordering::SeqCst)) };
    let keep = |polled| found.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(polled);
    std::thread::scope(|scope| {
        for _ in 1..concurrency.clamp(1, targets.len().max(1)) {
            scope.spawn(|| {
                while let Some(target) = take() {
                    keep(poll_one(target));
                }
            });
        }
        // This thread lists too, and is the one that sees the node stopping.
        loop {
            if cancelled() {
                stop.store(true, Ordering::SeqCst);
                break;
            }
            let Some(target) = take() else { break };
            keep(poll_one(target));
        }
    });
    if stop.load(Ordering::SeqCst) {
        return Err(DiscoveryError::Cancelled);
    }
    Ok(found.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner))
}

/// One repository's refs upstream, fingerprinted; none if they could not be listed.
fn poll_one(target: &RefPollTarget) -> PolledRefs {
    let fingerprint = crate::git::Remote::parse(&target.url)
        .and_then(|remote| crate::git::Git::detached().remote_refs(&remote))
        .map(|refs| crate::records::fingerprint(&refs));
    if let Err(e) = &fingerprint {
        tracing::warn!(repository = target.repository_id, error = %e, "could not list the upstream's refs");
    }
    PolledRefs { repository_id: target.repository_id, fingerprint: fingerprint.ok() }
}

/// A project on the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpstreamProject {
    /// The upstream's id of it (as text).
    pub(crate) id: String,
    /// What its repositories are listed by: a Bitbucket key, a GitLab group id, a Gitea org name.
    pub(crate) handle: String,
    /// Its key (Bitbucket), full path (GitLab) or name (Gitea).
    pub(crate) key: String,
    /// Its display name.
    pub(crate) name: String,
}

/// One page of a listing: its items, and where the next page starts (`None`: this was the last).
type Page<T> = (Vec<T>, Option<u64>);

/// Lists every selected repository of the upstream, all pages of `page` items (each API caps
/// it: Bitbucket 1000, GitLab 100, Gitea 50).
pub(crate) fn discover(
    leased: &LeasedDiscovery,
    page: u64,
    cancelled: &dyn Fn() -> bool,
) -> Result<Vec<DiscoveredRepository>, DiscoveryError> {
    let client = Client::new(leased, page);
    let settings = leased.settings();
    let projects = client.all(|start| client.projects_page(start), cancelled)?;
    let mut out = Vec::new();
    for project in projects.iter().filter(|p| settings.selects(&p.id)) {
        out.extend(client.all(|start| client.repos_page(project, start), cancelled)?);
    }
    Ok(out)
}

/// Repositories per page of a content-hash listing: Bitbucket's largest page.
const HASH_PAGE: u64 = 1000;

/// Lists the content hash every repository of a Bitbucket (or mirrorfarm) upstream publishes
/// (`GET /rest/mirroring/latest/repos`, all pages of `page` items): one listing polls the whole
/// farm, and the edge queues pulls of the repositories whose hash moved. A server that does not
/// publish them answers 404 (`DiscoveryError::Status`), and the edge polls it by its repositories'
/// refs instead ([`poll_refs`]). Pages are as large as Bitbucket allows (1000; a server that caps them lower says
/// where the next page starts).
pub(crate) fn list_content_hashes(
    leased: &LeasedDiscovery,
    cancelled: &dyn Fn() -> bool,
) -> Result<Vec<ListedHash>, DiscoveryError> {
    let page = HASH_PAGE;
    let client = Client::new(leased, page);
    client.all(
        |start| {
            let path = format!("/rest/mirroring/latest/repos?start={start}&limit={page}");
            let (body, _) = client.get(&path)?;
            bitbucket::hashes(&body).ok_or(DiscoveryError::Unreadable(path))
        },
        cancelled,
    )
}

struct Client<'a> {
    leased: &'a LeasedDiscovery,
    agent: ureq::Agent,
    page: u64,
}

impl<'a> Client<'a> {
    fn new(leased: &'a LeasedDiscovery, page: u64) -> Self {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
        Self { leased, agent, page }
    }

    /// Every page of a listing.
    fn all<T>(
        &self,
        page: impl Fn(u64) -> Result<Page<T>, DiscoveryError>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Vec<T>, DiscoveryError> {
        let mut items = Vec::new();
        let mut start = Some(self.first_page());
        while let Some(at) = start {
            if cancelled() {
                return Err(DiscoveryError::Cancelled);
            }
            let (mut got, next) = page(at)?;
            items.append(&mut got);
            // A server that names the same page again would loop forever.
            start = next.filter(|n| *n > at);
        }
        Ok(items)
    }

    /// Bitbucket pages by item offset from 0; GitLab and Gitea by page number from 1.
    fn first_page(&self) -> u64 {
        u64::from(self.leased.kind != UpstreamType::Bitbucket)
    }

    fn get(&self, path: &str) -> Result<(Value, Option<String>), DiscoveryError> {
        let url = format!("{}{path}", self.leased.api_base_url.trim_end_matches('/'));
        let mut request = self.agent.get(&url).set("Accept", "application/json");
        if let Some(token) = &self.leased.token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let what = scrub_text(path);
        match request.call() {
            Ok(r) => {
                let next = r.header("x-next-page").map(str::to_owned);
                let body = r.into_json().map_err(|_| DiscoveryError::Unreadable(what))?;
                Ok((body, next))
            }
            Err(ureq::Error::Status(status, _)) => Err(DiscoveryError::Status { status, what }),
            Err(e) => Err(DiscoveryError::Transport(scrub_text(&e.to_string()))),
        }
    }

    fn projects_page(&self, start: u64) -> Result<Page<UpstreamProject>, DiscoveryError> {
        let page = self.page;
        let path = match self.leased.kind {
            UpstreamType::Bitbucket => format!("/rest/api/latest/projects?start={start}&limit={page}"),
            UpstreamType::Gitlab => format!("/api/v4/groups?page={start}&per_page={page}&all_available=true"),
            UpstreamType::Gitea => format!("/api/v1/orgs?page={start}&limit={page}"),
        };
        let (body, next) = self.get(&path)?;
        let read = match self.leased.kind {
            UpstreamType::Bitbucket => bitbucket::projects(&body),
            UpstreamType::Gitlab => gitlab::groups(&body, next.as_deref()),
            UpstreamType::Gitea => gitea::orgs(&body, start),
        };
        read.ok_or(DiscoveryError::Unreadable(path))
    }

    fn repos_page(&self, project: &UpstreamProject, start: u64) -> Result<Page<DiscoveredRepository>, DiscoveryError> {
        let handle = mirrorfarm_core::api::encode(&project.handle);
        let page = self.page;
        let path = match self.leased.kind {
            UpstreamType::Bitbucket => format!("/rest/api/latest/projects/{handle}/repos?start={start}&limit={page}"),
            UpstreamType::Gitlab => format!("/api/v4/groups/{handle}/projects?page={start}&per_page={page}"),
            UpstreamType::Gitea => format!("/api/v1/orgs/{handle}/repos?page={start}&limit={page}"),
        };
        let (body, next) = self.get(&path)?;
        let read = match self.leased.kind {
            UpstreamType::Bitbucket => bitbucket::repos(&body, project),
            UpstreamType::Gitlab => gitlab::projects(&body, project, next.as_deref()),
            UpstreamType::Gitea => gitea::repos(&body, project, start),
        };
        read.ok_or(DiscoveryError::Unreadable(path))
    }
}

/// A JSON value as text: strings as they are, numbers in decimal (ids differ by API).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// Bitbucket Data Center's REST API: `{values, isLastPage, nextPageStart}` pages.
mod bitbucket {
    use super::{DiscoveredRepository, ListedHash, Page, UpstreamProject, Value, string, text};

    fn page<T>(body: &Value, item: impl Fn(&Value) -> Option<T>) -> Option<Page<T>> {
        let items = body["values"].as_array()?.iter().map(item).collect::<Option<Vec<T>>>()?;
        let last = body["isLastPage"].as_bool()?;
        Some((items, if last { None } else { Some(body["nextPageStart"].as_u64()?) }))
    }

    pub(super) fn projects(body: &Value) -> Option<Page<UpstreamProject>> {
        page(body, |p| {
            let key = string(&p["key"])?;
            Some(UpstreamProject { id: text(&p["id"])?, handle: key.clone(), name: string(&p["name"])?, key })
        })
    }

    /// A page of `EnrichedRepository`: each id with `properties.contentHash`; a repository that
    /// shows none is listed with zeros (never computed), so the edge polls it by its refs.
    pub(super) fn hashes(body: &Value) -> Option<Page<ListedHash>> {
        page(body, |r| {
            let repo_id = text(&r["id"])?;
            let content_hash =
                string(&r["properties"]["contentHash"]).unwrap_or_else(|| mirrorfarm_core::farm::ZERO_HASH.to_owned());
            Some(ListedHash { repo_id, content_hash: content_hash.to_ascii_lowercase() })
        })
    }

    pub(super) fn repos(body: &Value, project: &UpstreamProject) -> Option<Page<DiscoveredRepository>> {
        let (repos, next) = page(body, |r| {
            // A repository without an HTTP clone link cannot be mirrored over HTTP: skipped.
            let clone = r["links"]["clone"].as_array().and_then(|links| {
                links.iter().find(|l| l["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case("http")))
            });
            Some(clone.and_then(|c| string(&c["href"])).map(|clone_url| DiscoveredRepository {
                project_id: project.id.clone(),
                project_key: project.key.clone(),
                project_name: project.name.clone(),
                repo_id: text(&r["id"]).unwrap_or_default(),
                slug: string(&r["slug"]).unwrap_or_default(),
                name: string(&r["name"]).unwrap_or_default(),
                description: string(&r["description"]),
                public: r["public"].as_bool().unwrap_or(false),
                default_branch: string(&r["defaultBranch"]),
                clone_url,
            }))
        })?;
        let repos = repos.into_iter().flatten().filter(|r| !r.repo_id.is_empty() && !r.slug.is_empty()).collect();
        Some((repos, next))
    }
}

/// GitLab's REST API: arrays, the next page number in `X-Next-Page` (empty on the last).
mod gitlab {
    use super::{DiscoveredRepository, Page, UpstreamProject, Value, string, text};

    fn next(header: Option<&str>) -> Option<u64> {
        header.and_then(|h| h.trim().parse().ok())
    }

    pub(super) fn groups(body: &Value, next_page: Option<&str>) -> Option<Page<UpstreamProject>> {
        let groups = body
            .as_array()?
            .iter()
            .map(|g| {
                let id = text(&g["id"])?;
                Some(UpstreamProject {
                    handle: id.clone(),
                    id,
                    key: string(&g["full_path"]).or_else(|| string(&g["path"]))?,
                    name: string(&g["full_name"]).or_else(|| string(&g["name"]))?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some((groups, next(next_page)))
    }

    pub(super) fn projects(
        body: &Value,
        group: &UpstreamProject,
        next_page: Option<&str>,
    ) -> Option<Page<DiscoveredRepository>> {
        let projects = body
            .as_array()?
            .iter()
            .filter_map(|p| {
                Some(DiscoveredRepository {
                    project_id: group.id.clone(),
                    project_key: group.key.replace('/', "_"),
                    project_name: group.name.clone(),
                    repo_id: text(&p["id"])?,
                    slug: string(&p["path"])?,
                    name: string(&p["name"])?,
                    description: string(&p["description"]).filter(|d| !d.is_empty()),
                    public: p["visibility"].as_str() == Some("public"),
                    default_branch: string(&p["default_branch"]),
                    clone_url: string(&p["http_url_to_repo"])?,
                })
            })
            .collect();
        Some((projects, next(next_page)))
    }
}

/// Gitea's and Forgejo's REST API: arrays by page number; an empty page ends the listing.
mod gitea {
    use super::{DiscoveredRepository, Page, UpstreamProject, Value, string, text};

    fn next<T>(items: &[T], page: u64) -> Option<u64> {
        (!items.is_empty()).then_some(page + 1)
    }

    pub(super) fn orgs(body: &Value, page: u64) -> Option<Page<UpstreamProject>> {
        let orgs = body
            .as_array()?
            .iter()
            .map(|o| {
                let name = string(&o["username"]).or_else(|| string(&o["name"]))?;
                let full = string(&o["full_name"]).filter(|f| !f.is_empty()).unwrap_or_else(|| name.clone());
                Some(UpstreamProject { id: text(&o["id"])?, handle: name.clone(), key: name, name: full })
            })
            .collect::<Option<Vec<_>>>()?;
        let next = next(&orgs, page);
        Some((orgs, next))
    }

    pub(super) fn repos(body: &Value, org: &UpstreamProject, page: u64) -> Option<Page<DiscoveredRepository>> {
        let items = body.as_array()?;
        let repos = items
            .iter()
            .filter_map(|r| {
                Some(DiscoveredRepository {
                    project_id: org.id.clone(),
                    project_key: org.key.clone(),
                    project_name: org.name.clone(),
                    repo_id: text(&r["id"])?,
                    slug: string(&r["name"])?,
                    name: string(&r["name"])?,
                    description: string(&r["description"]).filter(|d| !d.is_empty()),
                    public: r["private"].as_bool() == Some(false),
                    default_branch: string(&r["default_branch"]),
                    clone_url: string(&r["clone_url"])?,
                })
            })
            .collect();
        Some((repos, next(items, page)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A repository at `dir` with `commits` empty commits on main (none: no refs at all).
    fn repository(dir: &std::path::Path, commits: usize) {
        std::fs::create_dir_all(dir).expect("dir");
        crate::testing::git(dir, &["init", "-q", "-b", "main"]);
        for i in 0..commits {
            crate::testing::git(dir, &["commit", "-q", "--allow-empty", "-m", &format!("commit {i}")]);
        }
    }

    #[test]
    fn a_ref_poll_fingerprints_every_repository_as_a_pull_would_and_marks_the_unlisted() {
        let root = std::env::temp_dir().join(format!("mf-ref-poll-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (one, two) = (root.join("one"), root.join("two"));
        repository(&one, 1);
        repository(&two, 2);
        let target =
            |id: i64, path: &std::path::Path| RefPollTarget { repository_id: id, url: path.display().to_string() };
        let targets = [target(1, &one), target(2, &two), target(3, &root.join("missing"))];
        let mut polled = poll_refs(&targets, 2, &|| false).expect("not cancelled");
        polled.sort_by_key(|p| p.repository_id);
        let pulled = |path: &std::path::Path| {
            let refs = crate::git::Git::detached()
                .remote_refs(&crate::git::Remote::parse(&path.display().to_string()).expect("url"));
            Some(crate::records::fingerprint(&refs.expect("listed")))
        };
        assert_eq!(
            polled,
            [
                PolledRefs { repository_id: 1, fingerprint: pulled(&one) },
                PolledRefs { repository_id: 2, fingerprint: pulled(&two) },
                PolledRefs { repository_id: 3, fingerprint: None },
            ]
        );
        assert_ne!(polled[0].fingerprint, polled[1].fingerprint);
        assert!(
            matches!(poll_refs(&targets, 2, &|| true), Err(DiscoveryError::Cancelled)),
            "a stopping node lists nothing"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    fn project(id: &str, key: &str) -> UpstreamProject {
        UpstreamProject { id: id.into(), handle: key.into(), key: key.into(), name: format!("{key} name") }
    }

    #[test]
    fn bitbucket_pages_and_http_clone_links() {
        let projects = json!({"size": 1, "limit": 1, "isLastPage": false, "nextPageStart": 1, "start": 0,
            "values": [{"id": 7, "key": "PRJ", "name": "Project", "public": false, "type": "NORMAL"}]});
        let (p, next) = bitbucket::projects(&projects).expect("read");
        assert_eq!((p[0].id.as_str(), p[0].key.as_str(), next), ("7", "PRJ", Some(1)));
        let repos = json!({"size": 2, "limit": 25, "isLastPage": true, "start": 0, "values": [
            {"id": 3, "slug": "repo", "name": "Repo", "public": true, "links": {"clone": [
                {"href": "ssh://git@bb.example:7999/prj/repo.git", "name": "ssh"},
                {"href": "https://bb.example/scm/prj/repo.git", "name": "http"}]}},
            {"id": 4, "slug": "no-http", "name": "No HTTP", "links": {"clone": [{"href": "ssh://x/y.git", "name": "ssh"}]}}
        ]});
        let (r, next) = bitbucket::repos(&repos, &project("7", "PRJ")).expect("read");
        assert_eq!(next, None);
        assert_eq!(r.len(), 1, "a repository without an http clone link is skipped");
        assert_eq!((r[0].repo_id.as_str(), r[0].clone_url.as_str()), ("3", "https://bb.example/scm/prj/repo.git"));
        assert!(r[0].public);
        assert!(bitbucket::projects(&json!({"values": []})).is_none(), "isLastPage is required");
    }

    #[test]
    fn bitbucket_content_hashes_in_pages() {
        let hash = "AB".repeat(32);
        let page = json!({"size": 2, "limit": 2, "isLastPage": false, "nextPageStart": 2, "start": 0, "values": [
            {"id": 11, "slug": "a", "name": "A", "properties": {"contentHash": hash, "metadataHash": "00"}},
            {"id": 12, "slug": "b", "name": "B"}
        ]});
        let (listed, next) = bitbucket::hashes(&page).expect("read");
        assert_eq!(next, Some(2));
        assert_eq!(listed[0], ListedHash { repo_id: "11".into(), content_hash: "ab".repeat(32) }, "lower-cased");
        assert_eq!(listed[1].content_hash, mirrorfarm_core::farm::ZERO_HASH, "none shown: never computed");
        assert!(bitbucket::hashes(&json!({"values": [{"slug": "no-id"}], "isLastPage": true})).is_none());
    }

    #[test]
    fn gitlab_groups_and_projects() {
        let groups =
            json!([{"id": 12, "name": "Team", "path": "team", "full_name": "Org / Team", "full_path": "org/team"}]);
        let (g, next) = gitlab::groups(&groups, Some("2")).expect("read");
        assert_eq!((g[0].handle.as_str(), g[0].key.as_str(), next), ("12", "org/team", Some(2)));
        let projects = json!([{"id": 99, "path": "svc", "name": "Service", "description": "", "visibility": "private",
            "default_branch": "main", "http_url_to_repo": "https://gl.example/org/team/svc.git"}]);
        let (p, next) = gitlab::projects(&projects, &g[0], Some("")).expect("read");
        assert_eq!(next, None, "an empty X-Next-Page ends the listing");
        assert_eq!(
            (p[0].project_key.as_str(), p[0].slug.as_str(), p[0].description.as_deref()),
            ("org_team", "svc", None)
        );
    }

    #[test]
    fn gitea_orgs_and_repos() {
        let orgs = json!([{"id": 5, "username": "acme", "full_name": ""}]);
        let (o, next) = gitea::orgs(&orgs, 1).expect("read");
        assert_eq!((o[0].name.as_str(), next), ("acme", Some(2)));
        let repos = json!([{"id": 41, "name": "tool", "private": false, "default_branch": "trunk",
            "clone_url": "https://gitea.example/acme/tool.git"}]);
        let (r, _) = gitea::repos(&repos, &o[0], 1).expect("read");
        assert_eq!((r[0].repo_id.as_str(), r[0].public, r[0].default_branch.as_deref()), ("41", true, Some("trunk")));
        let (none, next) = gitea::repos(&json!([]), &o[0], 3).expect("read");
        assert!(none.is_empty() && next.is_none());
    }
}
