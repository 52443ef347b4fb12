// Worker + runner + real git: a farm node leases push jobs from the Worker and mirrors between
// repositories served over smart HTTP with credentials. Nothing is mocked.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startWorker, client, roundTrips, ROOT, OUTPUT } from "../support/worker.mjs";
import { startGitServer } from "../support/git_http.mjs";
import { git, gitEnv, refs } from "../support/git.mjs";

const USER = "mirror-bot";
const PASS = "g1t-http-pa55";
const RUNNER = path.join(ROOT, "target/debug/mirrorfarm-runner");
const API = "/rest/mirrorfarm/1.0";

let worker, call, admin, gitServer, dir, nodeToken, repoId, runner;
const responses = [];
let runnerLog = "";

const work = () => path.join(dir, "work");
const served = (name) => path.join(dir, "served", name);

function commit(msg) {
  git(work(), "commit", "-q", "--allow-empty", "-m", msg);
  return git(work(), "rev-parse", "HEAD");
}
function publish() {
  git(work(), "push", "-q", "--force", "--prune", served("upstream.git"), "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*");
}

async function as(method, url, opts = {}) {
  const r = await call(method, url, { token: admin, ...opts });
  responses.push(r.text);
  return r;
}

function startRunner() {
  const child = spawn(
    RUNNER,
    ["run", "--edge-url", worker.url, "--data-dir", path.join(dir, "node"), "--poll-ms", "200", "--lease-seconds", "6", "--concurrency", "2"],
    { env: { ...process.env, MIRRORFARM_NODE_TOKEN: nodeToken, MIRRORFARM_LOG: "info", NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  child.stdout.on("data", (d) => (runnerLog += d));
  child.stderr.on("data", (d) => (runnerLog += d));
  return child;
}

async function stopRunner(signal = "SIGTERM") {
  // A process killed by a signal has no exit code, only a signal code.
  if (!runner || runner.exitCode !== null || runner.signalCode !== null) return;
  const exited = new Promise((r) => runner.once("exit", r));
  runner.kill(signal);
  await exited;
}

/** Polls the mirror until `pred` holds (or fails after `ms`). */
async function waitFor(mirrorId, pred, what, ms = 30_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = (await as("GET", `/api/v4/projects/${repoId}/remote_mirrors/${mirrorId}`)).body;
    if (pred(last)) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`${what}: timed out; mirror is ${JSON.stringify(last)}\nrunner log:\n${runnerLog.slice(-3000)}`);
}

async function createMirror(repoName, body) {
  git(dir, "init", "-q", "--bare", served(repoName));
  const r = await as("POST", `/api/v4/projects/${repoId}/remote_mirrors`, { json: { url: gitServer.url(repoName), enabled: true, ...body } });
  assert.equal(r.status, 201, r.text);
  return r.body;
}

before(async () => {
  execFileSync("cargo", ["build", "-q", "-p", "mirrorfarm-runner"], { cwd: ROOT, stdio: "inherit" });
  dir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-runner-e2e-"));
  mkdirSync(path.join(dir, "served"));
  execFileSync("git", ["init", "-q", "-b", "main", work()], { env: gitEnv });
  execFileSync("git", ["init", "-q", "--bare", served("upstream.git")], { env: gitEnv });
  commit("first");
  git(work(), "branch", "feature");
  git(work(), "tag", "-a", "v1", "-m", "release 1");
  publish();
  gitServer = await startGitServer({ root: path.join(dir, "served"), username: USER, password: PASS });
  worker = await startWorker({ allowedHosts: "127.0.0.1", retryBaseMs: 200, pollIntervalMs: 0 });
  call = client(worker.url);
  admin = worker.adminToken;
  assert.equal((await as("POST", "/rest/api/1.0/projects", { json: { key: "RUN", name: "Runner" } })).status, 201);
  const repo = await as("POST", "/rest/api/1.0/projects/RUN/repos", { json: { name: "app", upstreamUrl: gitServer.url("upstream.git") } });
  assert.equal(repo.status, 201, repo.text);
  repoId = repo.body.id;
  nodeToken = (await as("POST", `${API}/nodes`, { json: { name: "e2e-node" } })).body.token;
  runner = startRunner();
});

after(async () => {
  await stopRunner();
  await gitServer?.close();
  await worker?.stop();
  mkdirSync(OUTPUT, { recursive: true });
  writeFileSync(path.join(OUTPUT, "runner-e2e.log"), runnerLog);
  rmSync(dir, { recursive: true, force: true });
});

test("initial mirror over authenticated HTTP, then an incremental update", async () => {
  const m = await createMirror("target.git", {});
  const done = await waitFor(m.id, (x) => x.update_status === "finished", "initial mirror");
  assert.ok(done.last_successful_update_at && done.last_update_started_at && done.last_error === null);
  assert.equal(refs(served("target.git")), refs(served("upstream.git")));
  assert.ok(gitServer.state.requests.some((r) => r.includes("git-receive-pack")), "pushed over HTTP");

  const head = commit("second");
  publish();
  assert.equal((await as("POST", `/api/v4/projects/${repoId}/remote_mirrors/${m.id}/sync`)).status, 204);
  await waitFor(m.id, (x) => x.update_status === "finished" && x.last_successful_update_at !== done.last_successful_update_at, "incremental");
  assert.equal(git(served("target.git"), "rev-parse", "refs/heads/main"), head);
  assert.equal(refs(served("target.git")), refs(served("upstream.git")));
});

test("diverged target: kept and reported with keep_divergent_refs, forced without", async () => {
  const m = await createMirror("diverge.git", { keep_divergent_refs: true });
  await waitFor(m.id, (x) => x.update_status === "finished", "first push");
  const other = path.join(dir, "other");
  execFileSync("git", ["clone", "-q", "-b", "main", served("diverge.git"), other], { env: gitEnv });
  git(other, "commit", "-q", "--allow-empty", "-m", "written on the mirror");
  git(other, "push", "-q", "origin", "main");
  const targetTip = git(served("diverge.git"), "rev-parse", "refs/heads/main");
  const upstreamTip = commit("upstream moves on");
  publish();

  await as("POST", `/api/v4/projects/${repoId}/remote_mirrors/${m.id}/sync`);
  const failed = await waitFor(m.id, (x) => x.update_status === "failed", "diverged and kept");
  assert.match(failed.last_error, /^Some refs have diverged and have not been updated on the remote:/);
  assert.match(failed.last_error, /refs\/heads\/main/);
  assert.equal(git(served("diverge.git"), "rev-parse", "refs/heads/main"), targetTip, "not forced");

  assert.equal((await as("PUT", `/api/v4/projects/${repoId}/remote_mirrors/${m.id}`, { json: { keep_divergent_refs: false } })).status, 200);
  await as("POST", `/api/v4/projects/${repoId}/remote_mirrors/${m.id}/sync`);
  await waitFor(m.id, (x) => x.update_status === "finished", "forced");
  assert.equal(git(served("diverge.git"), "rev-parse", "refs/heads/main"), upstreamTip);
});

test("wrong credentials: three tries, then failed, with nothing secret in last_error", async () => {
  git(dir, "init", "-q", "--bare", served("locked.git"));
  const r = await as("POST", `/api/v4/projects/${repoId}/remote_mirrors`, {
    json: { url: gitServer.url("locked.git", `${USER}:wrong-pa55word`), enabled: true },
  });
  const failed = await waitFor(r.body.id, (x) => x.update_status === "failed", "bad password");
  assert.ok(failed.last_error.length > 0);
  assert.ok(!failed.last_error.includes("wrong-pa55word"));
  const jobs = (await as("GET", `${API}/repos/${repoId}/jobs`)).body.values.filter((j) => j.remoteMirrorId === r.body.id);
  assert.deepEqual(jobs.map((j) => [j.state, j.attempt]), [["FAILED", 3]]);
  assert.equal((await as("DELETE", `/api/v4/projects/${repoId}/remote_mirrors/${r.body.id}`)).status, 204);
});

test("a runner SIGKILLed mid-push: the job is leased again and the mirror converges", async () => {
  const m = await createMirror("crash.git", {});
  await waitFor(m.id, (x) => x.update_status === "finished", "first push");
  for (let i = 0; i < 5; i++) git(work(), "branch", `topic-${i}`);
  commit("more work");
  publish();
  gitServer.state.holdPushes = true;
  const pushesBefore = gitServer.state.held.length;
  await as("POST", `/api/v4/projects/${repoId}/remote_mirrors/${m.id}/sync`);
  const deadline = Date.now() + 20_000;
  while (gitServer.state.held.length === pushesBefore && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.ok(gitServer.state.held.length > pushesBefore, "the runner is in the middle of a push");
  assert.equal((await waitFor(m.id, () => true, "status")).update_status, "started");
  await stopRunner("SIGKILL");
  gitServer.releasePushes(); // the killed push's connection is gone: nothing lands
  runner = startRunner();
  const done = await waitFor(m.id, (x) => x.update_status === "finished", "converged after the crash", 40_000);
  assert.ok(done.last_successful_update_at);
  const crashRefs = refs(served("crash.git"));
  assert.equal(crashRefs, refs(served("upstream.git")), "no ref lost");
  const jobs = (await as("GET", `${API}/repos/${repoId}/jobs`)).body.values.filter((j) => j.remoteMirrorId === m.id);
  assert.ok(jobs.some((j) => j.attempt >= 2), `the job was leased again: ${JSON.stringify(jobs)}`);
});

test("pull mirror: a rewritten upstream is kept without overwrite, followed with it", async () => {
  const pullPath = `/api/v4/projects/${repoId}/mirror/pull`;
  const nodeCopy = path.join(dir, "node", "repos", `${repoId}.git`);
  const put = await as("PUT", pullPath, { json: { mirror_overwrites_diverged_branches: false, enabled: true } });
  assert.equal(put.status, 200, put.text);
  assert.equal(put.body.url, gitServer.url("upstream.git").replace(`${USER}:${PASS}`, "*****:*****"));
  assert.equal((await as("POST", pullPath)).status, 200);
  const waitPull = async (pred, what) => {
    const deadline = Date.now() + 30_000;
    let last;
    while (Date.now() < deadline) {
      last = (await as("GET", pullPath)).body;
      if (pred(last)) return last;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.fail(`${what}: ${JSON.stringify(last)}\n${runnerLog.slice(-2000)}`);
  };
  const first = await waitPull((p) => p.update_status === "finished", "first pull");
  const kept = git(nodeCopy, "rev-parse", "refs/heads/main");
  assert.equal(kept, git(served("upstream.git"), "rev-parse", "refs/heads/main"));

  git(work(), "reset", "-q", "--hard", "HEAD~1");
  const rewritten = commit("history rewritten upstream");
  publish();
  assert.equal((await as("POST", pullPath)).status, 200);
  const failed = await waitPull((p) => p.update_status === "failed", "kept rewrite");
  assert.match(failed.last_error, /diverged upstream/);
  assert.match(failed.last_error, /refs\/heads\/main/);
  assert.equal(git(nodeCopy, "rev-parse", "refs/heads/main"), kept, "the copy keeps its history");

  assert.equal((await as("PUT", pullPath, { json: { mirror_overwrites_diverged_branches: true } })).status, 200);
  assert.equal((await as("POST", pullPath)).status, 200);
  const done = await waitPull((p) => p.update_status === "finished" && p.last_successful_update_at !== first.last_successful_update_at, "overwrite");
  assert.equal(done.last_error, null);
  assert.equal(git(nodeCopy, "rev-parse", "refs/heads/main"), rewritten, "overwritten to upstream");
});

test("a signed push webhook syncs the mirrors; a forged one is refused", async () => {
  const hook = await as("PUT", `${API}/repos/${repoId}/webhook`);
  assert.equal(hook.status, 200, hook.text);
  const head = commit("announced by webhook");
  publish();
  const body = JSON.stringify({ ref: "refs/heads/main", after: head });
  const sign = (secret) => "sha256=" + createHmac("sha256", secret).update(body).digest("hex");
  const deliver = (signature) =>
    fetch(`${worker.url}${API}/repos/${repoId}/webhook`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-GitHub-Event": "push", "X-Hub-Signature-256": signature },
      body,
    });
  assert.equal((await deliver(sign("not-the-secret"))).status, 401);
  const ok = await deliver(sign(hook.body.secret));
  assert.equal(ok.status, 202);
  // The repository with its webhook secret, then the syncs queued: two D1 round trips.
  assert.equal(roundTrips(ok), 2);
  assert.ok((await ok.json()).queued >= 2, "a pull and the push mirrors");
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && git(served("target.git"), "rev-parse", "refs/heads/main") !== head) await new Promise((r) => setTimeout(r, 200));
  assert.equal(git(served("target.git"), "rev-parse", "refs/heads/main"), head, `webhook → sync\n${runnerLog.slice(-2000)}`);
});

test("cron polls skip an unchanged upstream and carry a changed one to the mirrors", async () => {
  const jobsOf = async () => (await as("GET", `${API}/repos/${repoId}/jobs?limit=1000`)).body.values;
  const idle = async () => {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if ((await jobsOf()).every((j) => j.state === "DONE" || j.state === "FAILED")) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.fail(`queue did not drain: ${JSON.stringify(await jobsOf())}`);
  };
  await idle();
  const scheduled = () => fetch(`${worker.url}/__scheduled?cron=*+*+*+*+*`);
  const before = (await jobsOf()).length;
  assert.equal((await scheduled()).status, 200);
  await idle();
  const polled = (await jobsOf()).slice(0, (await jobsOf()).length - before);
  assert.deepEqual(polled.map((j) => [j.kind, j.reason, j.state]), [["PULL_MIRROR", "POLL", "DONE"]], "one poll, nothing after it");
  assert.match(runnerLog, /upstream unchanged; nothing to pull/);

  const head = commit("found by the poll");
  publish();
  const mark = (await jobsOf()).length;
  await scheduled();
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && git(served("target.git"), "rev-parse", "refs/heads/main") !== head) await new Promise((r) => setTimeout(r, 200));
  assert.equal(git(served("target.git"), "rev-parse", "refs/heads/main"), head, "the poll carried the change to the mirror");
  await idle();
  const followed = (await jobsOf()).slice(0, (await jobsOf()).length - mark).map((j) => `${j.kind}/${j.reason}`);
  assert.ok(followed.includes("PULL_MIRROR/POLL") && followed.includes("PUSH_MIRROR/UPSTREAM"), followed.join(", "));
});

test("protected branches release/* and main: a protected-only mirror pushes exactly those", async () => {
  for (const branch of ["release/1.0", "release/2.x/hotfix", "dev", "releases-old"]) git(work(), "branch", "-f", branch);
  publish();
  const rules = `/api/v4/projects/${repoId}/protected_branches`;
  for (const name of ["release/*", "main"]) {
    const r = await as("POST", rules, { json: { name } });
    assert.equal(r.status, 201, r.text);
  }
  const m = await createMirror("protected.git", { only_protected_branches: true });
  await waitFor(m.id, (x) => x.update_status === "finished", "protected-only push");
  const heads = git(served("protected.git"), "for-each-ref", "--format=%(refname)", "refs/heads/").split("\n").sort();
  assert.deepEqual(heads, ["refs/heads/main", "refs/heads/release/1.0", "refs/heads/release/2.x/hotfix"]);
  const upstream = git(served("upstream.git"), "for-each-ref", "--format=%(refname)", "refs/heads/").split("\n");
  assert.ok(upstream.includes("refs/heads/dev") && upstream.includes("refs/heads/feature"), "the others exist upstream");
  assert.equal(git(served("protected.git"), "rev-parse", "refs/tags/v1"), git(served("upstream.git"), "rev-parse", "refs/tags/v1"), "tags are not filtered");
  // Unprotecting the wildcard leaves main alone protected.
  assert.equal((await as("DELETE", `${rules}/${encodeURIComponent("release/*")}`)).status, 204);
  const listed = await as("GET", rules);
  assert.deepEqual(listed.body.map((b) => b.name), ["main"]);
});

test("graceful shutdown releases and nothing secret reaches responses or logs", async () => {
  await stopRunner("SIGTERM");
  assert.match(runnerLog, /node stopped/);
  for (const text of responses) {
    assert.ok(!text.includes(PASS), `a response leaked the git password: ${text.slice(0, 200)}`);
  }
  assert.ok(!runnerLog.includes(PASS), "the runner log holds the git password");
  assert.ok(!runnerLog.includes(nodeToken), "the runner log holds its node token");
  assert.ok(!worker.logs().includes(PASS), "the Worker log holds the git password");
  assert.match(runnerLog, /\*\*\*\*\*:\*\*\*\*\*@127\.0\.0\.1/, "targets are logged masked");
});
