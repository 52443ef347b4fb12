//! In-memory fakes of the ports, for unit tests of the service.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use crate::identity::{AccessToken, GlobalRole, Level, NewUser, User};
use crate::mirrors::{PullMirror, RemoteMirror};
use crate::nodes::{FarmNode, NewNode};
use crate::queue::{Job, JobCompletion, JobKind, JobState, NewJob};
use crate::registry::{NewProject, NewRepository, Project, Repository};
use crate::store::{Crypto, CryptoError, Grants, RepositoryTriggers, SavedMirror, Store, StoreError, StoreResult};
use crate::time::Timestamp;
use crate::urls::StoredUrl;

/// Runs a future whose I/O is all in memory (it completes on its first poll).
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("in-memory futures never wait"),
    }
}

#[derive(Default)]
struct State {
    next_id: i64,
    users: Vec<User>,
    tokens: Vec<AccessToken>,
    projects: Vec<Project>,
    repos: Vec<(i64, NewRepository, i64)>, // (id, fields, project id)
    project_grants: HashMap<(i64, i64), Level>,
    repo_grants: HashMap<(i64, i64), Level>,
    mirrors: Vec<RemoteMirror>,
    jobs: Vec<Job>,
    nodes: Vec<FarmNode>,
    pull_mirrors: Vec<PullMirror>,
    triggers: Vec<RepositoryTriggers>,
}

impl State {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn repo(&self, id: i64) -> Option<Repository> {
        let (id, r, pid) = self.repos.iter().find(|(rid, ..)| *rid == id)?;
        let project = self.projects.iter().find(|p| p.id == *pid)?.clone();
        Some(Repository {
            id: *id,
            project,
            slug: r.slug.clone(),
            name: r.name.clone(),
            description: r.description.clone(),
            default_branch: r.default_branch.clone(),
            public: r.public,
            forkable: r.forkable,
            upstream: r.upstream.clone(),
            hierarchy_id: r.hierarchy_id.clone(),
            created_at: r.created_at,
        })
    }

    fn enqueue(&mut self, job: &NewJob) -> Job {
        if let Some(waiting) = self.jobs.iter().find(|j| {
            j.state == JobState::Queued
                && j.repository_id == job.repository_id
                && j.remote_mirror_id == job.remote_mirror_id
                && j.kind == job.kind
        }) {
            return waiting.clone();
        }
        let id = self.id();
        let row = Job {
            id,
            kind: job.kind,
            repository_id: job.repository_id,
            remote_mirror_id: job.remote_mirror_id,
            reason: job.reason,
            state: JobState::Queued,
            attempt: 0,
            enqueued_at: job.enqueued_at.millis(),
            not_before: None,
            lease_owner: None,
            lease_deadline: None,
            lease_id: None,
        };
        self.jobs.push(row.clone());
        row
    }
}

/// A [`Store`] in memory, with a switch that makes every write fail (to test atomicity).
#[derive(Default)]
pub struct MemoryStore {
    state: RefCell<State>,
    /// When set, writes fail with a backend error.
    pub fail_writes: Cell<bool>,
}

impl MemoryStore {
    fn write<T>(&self, f: impl FnOnce(&mut State) -> StoreResult<T>) -> StoreResult<T> {
        if self.fail_writes.get() {
            return Err(StoreError::Backend("injected failure".into()));
        }
        f(&mut self.state.borrow_mut())
    }

    /// Number of jobs in any state.
    pub fn job_count(&self) -> usize {
        self.state.borrow().jobs.len()
    }

    /// Moves a job's lease deadline (to simulate time passing for one lease).
    pub fn set_lease_deadline(&self, job_id: i64, deadline: Timestamp) {
        let mut s = self.state.borrow_mut();
        s.jobs.iter_mut().filter(|j| j.id == job_id).for_each(|j| j.lease_deadline = Some(deadline.millis()));
    }

    /// Every stored string field of every mirror, to scan for leaked secrets.
    pub fn mirror_dump(&self) -> String {
        format!("{:?}", self.state.borrow().mirrors)
    }
}

impl Store for MemoryStore {
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>> {
        Ok(self.state.borrow().users.iter().find(|u| u.id == id).cloned())
    }
    async fn user_by_name(&self, name: &str) -> StoreResult<Option<User>> {
        let s = self.state.borrow();
        Ok(s.users.iter().find(|u| u.name.eq_ignore_ascii_case(name) || u.slug.eq_ignore_ascii_case(name)).cloned())
    }
    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let mut users = self.state.borrow().users.clone();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(users)
    }
    async fn insert_user(&self, u: &NewUser) -> StoreResult<User> {
        self.write(|s| {
            if s.users.iter().any(|x| x.name.eq_ignore_ascii_case(&u.name)) {
                return Err(StoreError::Conflict(format!("A user named {} already exists.", u.name)));
            }
            let user = User {
                id: s.id(),
                name: u.name.clone(),
                slug: u.slug.clone(),
                display_name: u.display_name.clone(),
                email: u.email.clone(),
                role: u.role,
                created_at: u.created_at,
            };
            s.users.push(user.clone());
            Ok(user)
        })
    }
    async fn delete_user(&self, id: i64) -> StoreResult<()> {
        self.write(|s| {
            s.users.retain(|u| u.id != id);
            s.tokens.retain(|t| t.user_id != id);
            Ok(())
        })
    }
    async fn set_global_role(&self, user_id: i64, role: GlobalRole) -> StoreResult<()> {
        self.write(|s| {
            s.users.iter_mut().filter(|u| u.id == user_id).for_each(|u| u.role = role);
            Ok(())
        })
    }
    async fn tokens_by_lookup(&self, lookup: &str) -> StoreResult<Vec<AccessToken>> {
        Ok(self.state.borrow().tokens.iter().filter(|t| t.lookup == lookup).cloned().collect())
    }
    async fn list_tokens(&self, user_id: i64) -> StoreResult<Vec<AccessToken>> {
        Ok(self.state.borrow().tokens.iter().filter(|t| t.user_id == user_id).cloned().collect())
    }
    async fn insert_token(&self, t: &AccessToken) -> StoreResult<()> {
        self.write(|s| {
            s.tokens.push(t.clone());
            Ok(())
        })
    }
    async fn delete_token(&self, user_id: i64, token_id: &str) -> StoreResult<bool> {
        self.write(|s| {
            let before = s.tokens.len();
            s.tokens.retain(|t| !(t.user_id == user_id && t.id == token_id));
            Ok(s.tokens.len() != before)
        })
    }
    async fn insert_project(&self, p: &NewProject) -> StoreResult<Project> {
        self.write(|s| {
            if s.projects.iter().any(|x| x.key == p.key) {
                return Err(StoreError::Conflict(format!("Project key {} is already taken.", p.key)));
            }
            let project = Project {
                id: s.id(),
                key: p.key.clone(),
                name: p.name.clone(),
                description: p.description.clone(),
                public: p.public,
                created_at: p.created_at,
            };
            s.projects.push(project.clone());
            Ok(project)
        })
    }
    async fn project_by_key(&self, key: &str) -> StoreResult<Option<Project>> {
        Ok(self.state.borrow().projects.iter().find(|p| p.key.eq_ignore_ascii_case(key)).cloned())
    }
    async fn list_projects(&self) -> StoreResult<Vec<Project>> {
        Ok(self.state.borrow().projects.clone())
    }
    async fn delete_project(&self, id: i64) -> StoreResult<()> {
        self.write(|s| {
            s.projects.retain(|p| p.id != id);
            Ok(())
        })
    }
    async fn insert_repository(&self, r: &NewRepository) -> StoreResult<Repository> {
        self.write(|s| {
            if s.repos.iter().any(|(_, x, pid)| *pid == r.project_id && x.slug == r.slug) {
                return Err(StoreError::Conflict(format!("Repository {} already exists.", r.slug)));
            }
            let id = s.id();
            s.repos.push((id, r.clone(), r.project_id));
            s.repo(id).ok_or_else(|| StoreError::Backend("project vanished".into()))
        })
    }
    async fn repository_by_id(&self, id: i64) -> StoreResult<Option<Repository>> {
        Ok(self.state.borrow().repo(id))
    }
    async fn repository_by_slug(&self, project_id: i64, slug: &str) -> StoreResult<Option<Repository>> {
        let s = self.state.borrow();
        Ok(s.repos.iter().find(|(_, r, pid)| *pid == project_id && r.slug == slug).and_then(|(id, ..)| s.repo(*id)))
    }
    async fn list_repositories(&self, project_id: Option<i64>) -> StoreResult<Vec<Repository>> {
        let s = self.state.borrow();
        Ok(s.repos
            .iter()
            .filter(|(_, _, pid)| project_id.is_none_or(|p| p == *pid))
            .filter_map(|(id, ..)| s.repo(*id))
            .collect())
    }
    async fn delete_repository(&self, id: i64) -> StoreResult<()> {
        self.write(|s| {
            s.repos.retain(|(rid, ..)| *rid != id);
            s.mirrors.retain(|m| m.repository_id != id);
            s.jobs.retain(|j| j.repository_id != id);
            Ok(())
        })
    }
    async fn grants_for(&self, user_id: i64) -> StoreResult<Grants> {
        let s = self.state.borrow();
        Ok(Grants {
            projects: s.project_grants.iter().filter(|((_, u), _)| *u == user_id).map(|((p, _), l)| (*p, *l)).collect(),
            repositories: s
                .repo_grants
                .iter()
                .filter(|((_, u), _)| *u == user_id)
                .map(|((r, _), l)| (*r, *l))
                .collect(),
        })
    }
    async fn set_project_grant(&self, project_id: i64, user_id: i64, level: Option<Level>) -> StoreResult<()> {
        self.write(|s| {
            match level {
                Some(l) => s.project_grants.insert((project_id, user_id), l),
                None => s.project_grants.remove(&(project_id, user_id)),
            };
            Ok(())
        })
    }
    async fn set_repository_grant(&self, repository_id: i64, user_id: i64, level: Option<Level>) -> StoreResult<()> {
        self.write(|s| {
            match level {
                Some(l) => s.repo_grants.insert((repository_id, user_id), l),
                None => s.repo_grants.remove(&(repository_id, user_id)),
            };
            Ok(())
        })
    }
    async fn list_remote_mirrors(
        &self,
        repository_id: i64,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<RemoteMirror>, u64)> {
        let s = self.state.borrow();
        let all: Vec<_> = s.mirrors.iter().filter(|m| m.repository_id == repository_id).cloned().collect();
        let total = all.len() as u64;
        Ok((all.into_iter().skip(offset as usize).take(limit as usize).collect(), total))
    }
    async fn remote_mirror(&self, repository_id: i64, id: i64) -> StoreResult<Option<RemoteMirror>> {
        Ok(self.state.borrow().mirrors.iter().find(|m| m.repository_id == repository_id && m.id == id).cloned())
    }
    async fn insert_remote_mirror(&self, m: &RemoteMirror, job: Option<&NewJob>) -> StoreResult<RemoteMirror> {
        self.write(|s| {
            let mut row = m.clone();
            row.id = s.id();
            s.mirrors.push(row.clone());
            if let Some(job) = job {
                s.enqueue(&NewJob { remote_mirror_id: Some(row.id), ..job.clone() });
            }
            Ok(row)
        })
    }
    async fn update_remote_mirror(&self, m: &RemoteMirror, job: Option<&NewJob>) -> StoreResult<()> {
        self.write(|s| {
            if let Some(row) = s.mirrors.iter_mut().find(|x| x.id == m.id) {
                *row = m.clone();
            }
            if let Some(job) = job {
                s.enqueue(job);
            }
            Ok(())
        })
    }
    async fn delete_remote_mirror(&self, repository_id: i64, id: i64) -> StoreResult<()> {
        self.write(|s| {
            s.mirrors.retain(|m| !(m.repository_id == repository_id && m.id == id));
            s.jobs.retain(|j| !(j.remote_mirror_id == Some(id) && j.state == JobState::Queued));
            Ok(())
        })
    }
    async fn pull_mirror(&self, repository_id: i64) -> StoreResult<Option<PullMirror>> {
        Ok(self.state.borrow().pull_mirrors.iter().find(|p| p.repository_id == repository_id).cloned())
    }
    async fn save_pull_mirror(
        &self,
        mirror: &PullMirror,
        upstream: Option<&StoredUrl>,
        job: Option<&NewJob>,
    ) -> StoreResult<()> {
        self.write(|s| {
            s.pull_mirrors.retain(|x| x.repository_id != mirror.repository_id);
            s.pull_mirrors.push(mirror.clone());
            if let Some(url) = upstream
                && let Some((_, r, _)) = s.repos.iter_mut().find(|(id, ..)| *id == mirror.repository_id)
            {
                r.upstream = Some(url.clone());
            }
            if let Some(job) = job {
                s.enqueue(job);
            }
            Ok(())
        })
    }
    async fn triggers(&self, repository_id: i64) -> StoreResult<Option<RepositoryTriggers>> {
        Ok(self.state.borrow().triggers.iter().find(|t| t.repository_id == repository_id).cloned())
    }
    async fn save_triggers(&self, triggers: &RepositoryTriggers) -> StoreResult<()> {
        self.write(|s| {
            s.triggers.retain(|t| t.repository_id != triggers.repository_id);
            s.triggers.push(triggers.clone());
            Ok(())
        })
    }
    async fn repositories_due_for_poll(&self, before: Timestamp) -> StoreResult<Vec<i64>> {
        let s = self.state.borrow();
        Ok(s.repos
            .iter()
            .filter(|(_, r, _)| r.upstream.is_some())
            .map(|(id, ..)| *id)
            .filter(|id| s.pull_mirrors.iter().find(|p| p.repository_id == *id).is_none_or(|p| p.enabled))
            .filter(|id| {
                s.triggers
                    .iter()
                    .find(|t| t.repository_id == *id)
                    .and_then(|t| t.last_polled_at)
                    .is_none_or(|at| at < before)
            })
            .collect())
    }
    async fn enabled_remote_mirror_ids(&self, repository_id: i64) -> StoreResult<Vec<i64>> {
        Ok(self
            .state
            .borrow()
            .mirrors
            .iter()
            .filter(|m| m.repository_id == repository_id && m.enabled)
            .map(|m| m.id)
            .collect())
    }
    async fn enqueue(&self, job: &NewJob) -> StoreResult<Job> {
        self.write(|s| Ok(s.enqueue(job)))
    }
    async fn job(&self, id: i64) -> StoreResult<Option<Job>> {
        Ok(self.state.borrow().jobs.iter().find(|j| j.id == id).cloned())
    }
    async fn remote_mirror_by_id(&self, id: i64) -> StoreResult<Option<RemoteMirror>> {
        Ok(self.state.borrow().mirrors.iter().find(|m| m.id == id).cloned())
    }
    async fn insert_node(&self, node: &NewNode) -> StoreResult<FarmNode> {
        self.write(|s| {
            if s.nodes.iter().any(|n| n.name == node.name) {
                return Err(StoreError::Conflict("A node with that name already exists.".into()));
            }
            let row = FarmNode {
                id: s.id(),
                name: node.name.clone(),
                lookup: node.lookup.clone(),
                hash: node.hash.clone(),
                created_at: node.created_at,
                last_seen: None,
            };
            s.nodes.push(row.clone());
            Ok(row)
        })
    }
    async fn nodes_by_lookup(&self, lookup: &str) -> StoreResult<Vec<FarmNode>> {
        Ok(self.state.borrow().nodes.iter().filter(|n| n.lookup == lookup).cloned().collect())
    }
    async fn list_nodes(&self) -> StoreResult<Vec<FarmNode>> {
        Ok(self.state.borrow().nodes.clone())
    }
    async fn touch_node(&self, id: i64, now: Timestamp) -> StoreResult<()> {
        self.write(|s| {
            s.nodes.iter_mut().filter(|n| n.id == id).for_each(|n| n.last_seen = Some(now));
            Ok(())
        })
    }
    async fn lease_next_job(
        &self,
        node_id: i64,
        lease_id: &str,
        now: Timestamp,
        deadline: Timestamp,
        repository: Option<i64>,
    ) -> StoreResult<Option<Job>> {
        self.write(|s| {
            let due = |j: &Job| j.state == JobState::Queued && j.not_before.is_none_or(|t| t <= now.millis());
            let busy: Vec<(i64, Option<i64>)> = s
                .jobs
                .iter()
                .filter(|j| j.state == JobState::Leased)
                .map(|j| (j.repository_id, j.remote_mirror_id))
                .collect();
            // Repositories whose pull is leased or due: their pushes wait for it.
            let pulling: Vec<i64> = s
                .jobs
                .iter()
                .filter(|j| j.kind == JobKind::PullMirror && (j.state == JobState::Leased || due(j)))
                .map(|j| j.repository_id)
                .collect();
            let next = s
                .jobs
                .iter_mut()
                .filter(|j| due(j))
                .filter(|j| repository.is_none_or(|r| r == j.repository_id))
                .filter(|j| !busy.contains(&(j.repository_id, j.remote_mirror_id)))
                .filter(|j| j.kind == JobKind::PullMirror || !pulling.contains(&j.repository_id))
                .min_by_key(|j| (j.enqueued_at, j.id));
            Ok(next.map(|j| {
                j.state = JobState::Leased;
                j.attempt += 1;
                j.lease_owner = Some(node_id);
                j.lease_id = Some(lease_id.to_owned());
                j.lease_deadline = Some(deadline.millis());
                j.clone()
            }))
        })
    }
    async fn renew_lease(&self, job_id: i64, lease_id: &str, deadline: Timestamp) -> StoreResult<bool> {
        self.write(|s| {
            let job = s
                .jobs
                .iter_mut()
                .find(|j| j.id == job_id && j.state == JobState::Leased && j.lease_id.as_deref() == Some(lease_id));
            Ok(job.map(|j| j.lease_deadline = Some(deadline.millis())).is_some())
        })
    }
    async fn finish_job(
        &self,
        job_id: i64,
        lease_id: &str,
        completion: JobCompletion,
        reported: bool,
        now: Timestamp,
        mirror: Option<SavedMirror<'_>>,
    ) -> StoreResult<bool> {
        self.write(|s| {
            let Some(pos) = s
                .jobs
                .iter()
                .position(|j| j.id == job_id && j.state == JobState::Leased && j.lease_id.as_deref() == Some(lease_id))
            else {
                return Ok(false);
            };
            let sibling_waits = {
                let j = &s.jobs[pos];
                s.jobs.iter().any(|o| {
                    o.id != j.id
                        && o.state == JobState::Queued
                        && o.remote_mirror_id == j.remote_mirror_id
                        && o.repository_id == j.repository_id
                })
            };
            let job = &mut s.jobs[pos];
            job.lease_deadline = None;
            if !reported {
                job.lease_id = None;
            }
            match completion {
                JobCompletion::Done => job.state = JobState::Done,
                JobCompletion::Failed => job.state = JobState::Failed,
                JobCompletion::RetryAt(_) | JobCompletion::Released if sibling_waits => job.state = JobState::Done,
                JobCompletion::RetryAt(at) => {
                    job.state = JobState::Queued;
                    job.not_before = Some(at.millis());
                }
                JobCompletion::Released => {
                    job.state = JobState::Queued;
                    job.attempt = job.attempt.saturating_sub(1);
                    job.not_before = Some(now.millis());
                }
            }
            match mirror {
                Some(SavedMirror::Push(m)) => {
                    if let Some(row) = s.mirrors.iter_mut().find(|x| x.id == m.id) {
                        *row = m.clone();
                    }
                }
                Some(SavedMirror::Pull(p)) => {
                    s.pull_mirrors.retain(|x| x.repository_id != p.repository_id);
                    s.pull_mirrors.push(p.clone());
                }
                None => {}
            }
            Ok(true)
        })
    }
    async fn expired_leases(&self, now: Timestamp) -> StoreResult<Vec<Job>> {
        let s = self.state.borrow();
        Ok(s.jobs
            .iter()
            .filter(|j| j.state == JobState::Leased && j.lease_deadline.is_some_and(|d| d < now.millis()))
            .cloned()
            .collect())
    }
    async fn list_jobs(&self, repository_id: i64) -> StoreResult<Vec<Job>> {
        let mut jobs: Vec<Job> =
            self.state.borrow().jobs.iter().filter(|j| j.repository_id == repository_id).cloned().collect();
        jobs.reverse();
        Ok(jobs)
    }
}

/// A [`Crypto`] fake: reversible "sealing" that never contains the plaintext, a stand-in hash,
/// and counting "random" bytes.
#[derive(Default)]
pub struct FakeCrypto {
    counter: Cell<u8>,
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

impl Crypto for FakeCrypto {
    async fn seal(&self, plaintext: &str) -> Result<String, CryptoError> {
        Ok(format!("sealed:{}", hex(&plaintext.bytes().map(|b| b ^ 0x5a).collect::<Vec<_>>())))
    }
    async fn unseal(&self, sealed: &str) -> Result<String, CryptoError> {
        let hex = sealed.strip_prefix("sealed:").ok_or_else(|| CryptoError::Platform("not sealed".into()))?;
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map(|b| b ^ 0x5a))
            .collect::<Result<_, _>>()
            .map_err(|e| CryptoError::Platform(e.to_string()))?;
        String::from_utf8(bytes).map_err(|e| CryptoError::Platform(e.to_string()))
    }
    async fn hmac_sha256_hex(&self, key: &[u8], data: &[u8]) -> Result<String, CryptoError> {
        Ok(format!("hmac:{}:{}", hex(key), hex(data)))
    }
    async fn sha256_hex(&self, data: &[u8]) -> Result<String, CryptoError> {
        Ok(format!("hash:{}", hex(data)))
    }
    fn random_bytes(&self, len: usize) -> Result<Vec<u8>, CryptoError> {
        Ok((0..len)
            .map(|_| {
                self.counter.set(self.counter.get().wrapping_add(1));
                self.counter.get()
            })
            .collect())
    }
}
