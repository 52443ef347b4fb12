// Fork sync end to end: the Worker under workerd, a farm node, and real repositories served over
// authenticated smart HTTP: an origin's upstream and a fork. Every Bitbucket case of seed 001 and
// BITBUCKET.md §B, checked against the repositories themselves.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, execFileSync, execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startWorker, client, ROOT, OUTPUT } from "../support/worker.mjs";
import { startGitServer } from "../support/git_http.mjs";
import { git, gitEnv } from "../support/git.mjs";

const USER = "fork-bot";
const PASS = "f0rk-http-pa55";
const RUNNER = path.join(ROOT, "target/debug/mirrorfarm-runner");
const PY = path.join(ROOT, ".venv-e2e/bin/python");
const SYNC = "/rest/sync/1.0/projects/FS/repos/app-fork";

let worker, call, admin, gitServer, dir, nodeToken, originId, runner;
const responses = [];
let runnerLog = "";

const served = (name) => path.join(dir, "served", name);
const up = () => path.join(dir, "up");
const mine = () => path.join(dir, "mine");

async function as(method, url, opts = {}) {
  const r = await call(method, url, { token: admin, ...opts });
  responses.push(r.text);
  return r;
}

/** A commit on `branch` of a working clone that writes `file`. */
function change(repo, branch, file, text) {
  git(repo, "checkout", "-q", "-B", branch, `origin/${branch}`);
  writeFileSync(path.join(repo, file), text);
  git(repo, "add", file);
  git(repo, "commit", "-q", "-m", `${file} on ${branch}`);
  return git(repo, "rev-parse", "HEAD");
}

const tip = (repo, name) => spawnSync("git", ["-C", repo, "rev-parse", "-q", "--verify", name], { env: gitEnv }).stdout.toString().trim() || null;
const heads = (repo) => git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", "refs/tags");

function publishUp() {
  git(up(), "push", "-q", "--force", "--prune", "origin", "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*");
}

function startRunner() {
  const child = spawn(
    RUNNER,
    ["run", "--edge-url", worker.url, "--data-dir", path.join(dir, "node"), "--poll-ms", "200", "--lease-seconds", "10", "--concurrency", "2"],
    { env: { ...process.env, MIRRORFARM_NODE_TOKEN: nodeToken, MIRRORFARM_LOG: "info", NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  child.stdout.on("data", (d) => (runnerLog += d));
  child.stderr.on("data", (d) => (runnerLog += d));
  return child;
}

async function stopRunner() {
  // A process killed by a signal has no exit code, only a signal code.
  if (!runner || runner.exitCode !== null || runner.signalCode !== null) return;
  const exited = new Promise((r) => runner.once("exit", r));
  runner.kill("SIGTERM");
  await exited;
}

/** Polls the fork's sync status until `pred` holds. */
async function statusWhen(pred, what, ms = 30_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = (await as("GET", SYNC)).body;
    if (pred(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${what}: ${JSON.stringify(last)}\nrunner log:\n${runnerLog.slice(-3000)}`);
}

/** The origin's upstream moved: a manual sync of the origin pulls it, and its forks follow. */
async function originMoved() {
  const r = await as("POST", `/rest/mirrorfarm/1.0/repos/${originId}/sync`);
  assert.equal(r.status, 202, r.text);
}

const ids = (list) => list.map((r) => r.displayId).sort();

before(async () => {
  execFileSync("cargo", ["build", "-q", "-p", "mirrorfarm-runner"], { cwd: ROOT, stdio: "inherit" });
  dir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-forks-e2e-"));
  mkdirSync(path.join(dir, "served"));
  execFileSync("git", ["init", "-q", "--bare", "-b", "main", served("upstream.git")], { env: gitEnv });
  execFileSync("git", ["init", "-q", "--bare", "-b", "main", served("fork.git")], { env: gitEnv });
  execFileSync("git", ["clone", "-q", served("upstream.git"), up()], { env: gitEnv });
  writeFileSync(path.join(up(), "a.txt"), "one\n");
  git(up(), "add", "a.txt");
  git(up(), "commit", "-q", "-m", "first");
  git(up(), "branch", "-M", "main");
  for (const b of ["feature", "docs", "old", "conflict"]) git(up(), "branch", b);
  git(up(), "tag", "-a", "v1", "-m", "release 1");
  publishUp();
  gitServer = await startGitServer({ root: path.join(dir, "served"), username: USER, password: PASS });
  worker = await startWorker({ allowedHosts: "127.0.0.1", retryBaseMs: 200 });
  call = client(worker.url);
  admin = worker.adminToken;
  assert.equal((await as("POST", "/rest/api/1.0/projects", { json: { key: "FS", name: "Fork sync" } })).status, 201);
  const origin = await as("POST", "/rest/api/1.0/projects/FS/repos", { json: { name: "app", upstreamUrl: gitServer.url("upstream.git") } });
  assert.equal(origin.status, 201, origin.text);
  originId = origin.body.id;
  nodeToken = (await as("POST", "/rest/mirrorfarm/1.0/nodes", { json: { name: "fork-node" } })).body.token;
  runner = startRunner();
});

after(async () => {
  await stopRunner();
  await gitServer?.close();
  await worker?.stop();
  mkdirSync(OUTPUT, { recursive: true });
  writeFileSync(path.join(OUTPUT, "forks-e2e.log"), runnerLog);
  rmSync(dir, { recursive: true, force: true });
});

test("a fork is created in Bitbucket's shape, with its git location masked", async () => {
  const noUrl = await as("POST", "/rest/api/1.0/projects/FS/repos/app", { json: { name: "app-fork" } });
  assert.equal(noUrl.status, 400);
  assert.equal(noUrl.body.errors[0].context, "url");
  const fork = await as("POST", "/rest/api/1.0/projects/FS/repos/app", {
    json: { name: "app-fork", project: { key: "FS" }, url: gitServer.url("fork.git") },
  });
  assert.equal(fork.status, 201, fork.text);
  assert.equal(fork.body.origin.id, originId);
  assert.equal(fork.body.origin.project.key, "FS");
  assert.match(fork.body.url, /^http:\/\/\*\*\*\*\*:\*\*\*\*\*@127\.0\.0\.1:\d+\/fork\.git$/);
  assert.equal((await as("GET", "/rest/api/1.0/projects/FS/repos/app-fork")).body.origin.slug, "app");
  const forks = await as("GET", "/rest/api/1.0/projects/FS/repos/app/forks");
  assert.deepEqual(forks.body.values.map((r) => r.slug), ["app-fork"]);
  const status = await as("GET", `${SYNC}/`);
  assert.deepEqual([status.status, status.body.available, status.body.enabled], [200, true, false]);
});

test("enabling syncs before answering: 200 with the status, the fork holds the origin's refs", async () => {
  const started = Date.now();
  const r = await as("POST", SYNC, { json: { enabled: true } });
  const took = Date.now() - started;
  assert.equal(r.status, 200, `${r.text}\n${runnerLog.slice(-2000)}`);
  assert.equal(r.body.enabled, true);
  assert.equal(typeof r.body.lastSync, "number");
  assert.deepEqual([r.body.aheadRefs, r.body.divergedRefs, r.body.orphanedRefs], [[], [], []]);
  assert.equal(heads(served("fork.git")), heads(served("upstream.git")), "synced before the answer");
  console.log(`# enable → 200 with a fresh sync in ${took} ms (first clone of the origin included)`);
  execFileSync("git", ["clone", "-q", served("fork.git"), mine()], { env: gitEnv });
});

test("the origin moves: branches fast-forward, an unchanged tag follows, new refs are created", async () => {
  git(up(), "checkout", "-q", "main");
  writeFileSync(path.join(up(), "b.txt"), "two\n");
  git(up(), "add", "b.txt");
  git(up(), "commit", "-q", "-m", "second");
  git(up(), "branch", "new-topic");
  git(up(), "tag", "-f", "-a", "v1", "-m", "release 1, moved");
  git(up(), "tag", "v2");
  publishUp();
  await originMoved();
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && tip(served("fork.git"), "refs/tags/v2") === null) await new Promise((r) => setTimeout(r, 100));
  assert.equal(heads(served("fork.git")), heads(served("upstream.git")), `the fork followed\n${runnerLog.slice(-2000)}`);
});

test("fork-only commits are AHEAD, both sides DIVERGED, a branch the origin deleted ORPHANED; nothing lost", async () => {
  git(mine(), "fetch", "-q", "origin");
  const forkFeature = change(mine(), "feature", "f.txt", "fork work\n");
  const forkDocs = change(mine(), "docs", "fork-notes.txt", "fork notes\n");
  const forkOld = change(mine(), "old", "o.txt", "kept\n");
  const forkConflict = change(mine(), "conflict", "a.txt", "fork's line\n");
  git(mine(), "push", "-q", "origin", "feature", "docs", "old", "conflict");
  git(up(), "fetch", "-q", "origin");
  change(up(), "docs", "upstream-notes.txt", "upstream notes\n");
  change(up(), "conflict", "a.txt", "upstream's line\n");
  git(up(), "checkout", "-q", "main");
  git(up(), "push", "-q", "origin", "docs", "conflict", ":old");
  await originMoved();
  const s = await statusWhen((x) => x.orphanedRefs.length === 1, "orphaned after the origin deleted old");
  assert.deepEqual(ids(s.aheadRefs), ["feature"]);
  assert.deepEqual(ids(s.divergedRefs), ["conflict", "docs"]);
  assert.deepEqual(s.orphanedRefs, [{ id: "refs/heads/old", displayId: "old", type: "BRANCH", state: "ORPHANED", tag: false }]);
  // Nothing forced or deleted.
  assert.deepEqual(
    ["feature", "docs", "old", "conflict"].map((b) => tip(served("fork.git"), `refs/heads/${b}`)),
    [forkFeature, forkDocs, forkOld, forkConflict],
  );
  const at = await as("GET", `${SYNC}?at=refs/heads/docs`);
  assert.deepEqual([ids(at.body.divergedRefs), at.body.aheadRefs.length, at.body.orphanedRefs.length], [["docs"], 0, 0]);
});

test("MERGE makes a real merge commit, pushed without force: the ref is then AHEAD", async () => {
  const forkDocs = tip(served("fork.git"), "refs/heads/docs");
  const upDocs = tip(served("upstream.git"), "refs/heads/docs");
  const r = await as("POST", `${SYNC}/synchronize`, {
    json: { refId: "refs/heads/docs", action: "MERGE", context: { commitMessage: "Catch up with upstream docs" } },
  });
  assert.equal(r.status, 200, `${r.text}\n${runnerLog.slice(-2000)}`);
  assert.deepEqual(r.body, { id: "refs/heads/docs", displayId: "docs", type: "BRANCH", state: "AHEAD", tag: false });
  const merged = tip(served("fork.git"), "refs/heads/docs");
  assert.equal(git(served("fork.git"), "log", "-1", "--format=%P", merged), `${forkDocs} ${upDocs}`);
  assert.equal(git(served("fork.git"), "log", "-1", "--format=%s|%an|%cn", merged), "Catch up with upstream docs|Administrator|Administrator");
  const files = git(served("fork.git"), "ls-tree", "--name-only", merged).split("\n");
  assert.ok(files.includes("fork-notes.txt") && files.includes("upstream-notes.txt"), files.join(","));
  const s = await as("GET", SYNC);
  assert.deepEqual([ids(s.body.aheadRefs), ids(s.body.divergedRefs)], [["docs", "feature"], ["conflict"]]);
});

test("MERGE with a conflict: 409 naming the paths, the fork unchanged", async () => {
  const before = tip(served("fork.git"), "refs/heads/conflict");
  const r = await as("POST", `${SYNC}/synchronize`, { json: { refId: "conflict", action: "MERGE" } });
  assert.equal(r.status, 409, r.text);
  assert.match(r.body.errors[0].message, /conflicts in: a\.txt/);
  assert.equal(tip(served("fork.git"), "refs/heads/conflict"), before);
});

test("DISCARD takes the origin's commit, or deletes a ref the origin deleted: 204, in step", async () => {
  const r = await as("POST", `${SYNC}/synchronize`, { json: { refId: "refs/heads/conflict", action: "DISCARD" } });
  assert.equal(r.status, 204, r.text);
  assert.equal(tip(served("fork.git"), "refs/heads/conflict"), tip(served("upstream.git"), "refs/heads/conflict"));
  const gone = await as("POST", `${SYNC}/synchronize`, { json: { refId: "old", action: "DISCARD" } });
  assert.equal(gone.status, 204, gone.text);
  assert.equal(tip(served("fork.git"), "refs/heads/old"), null);
  const s = await as("GET", SYNC);
  assert.deepEqual([ids(s.body.aheadRefs), s.body.divergedRefs, s.body.orphanedRefs], [["docs", "feature"], [], []]);
});

test("synchronize's error cases answer as Bitbucket's table says", async () => {
  const sync = (json, token = admin) => call("POST", `${SYNC}/synchronize`, { token, json });
  assert.equal((await call("POST", `${SYNC}/synchronize`, { token: admin })).status, 400, "an empty body");
  assert.equal((await sync({ refId: "docs", action: "SQUASH" })).status, 400);
  assert.equal((await sync({ refId: "docs", action: "REBASE" })).status, 501);
  assert.equal((await sync({ refId: "main", action: "DISCARD" })).status, 409, "already in step");
  assert.equal((await sync({ refId: "feature", action: "MERGE" })).status, 409, "AHEAD, not DIVERGED");
  assert.equal((await call("POST", "/rest/sync/1.0/projects/FS/repos/nope/synchronize", { token: admin, json: { refId: "a", action: "MERGE" } })).status, 404);
  assert.equal((await call("POST", `${SYNC}/synchronize`, { json: { refId: "docs", action: "MERGE" } })).status, 401, "never anonymous");
  assert.equal((await call("POST", "/rest/sync/1.0/projects/FS/repos/app", { token: admin, json: { enabled: true } })).status, 409, "not a fork");
});

test("stashy's get_sync and update_sync work unchanged", async () => {
  // Not spawnSync: the git server the node syncs through lives in this process.
  const env = { ...process.env, MF_URL: worker.url, MF_USER: "admin", MF_TOKEN: admin, MF_PROJECT: "FS", MF_SLUG: "app-fork" };
  let run;
  try {
    run = await promisify(execFile)(PY, [path.join(ROOT, "tests/python/stashy_client.py")], { env, encoding: "utf8" });
  } catch (e) {
    assert.fail(`stashy run failed:\n${e.stdout}\n${e.stderr}\n${runnerLog.slice(-2000)}`);
  }
  process.stdout.write(run.stdout);
  assert.match(run.stdout, /ok - update_sync\(True\) syncs and switches it on/);
});

test("a job queued while a node long-polls starts within 200 ms", async () => {
  await stopRunner();
  // The stopped node still holds the origin's copy and was seen moments ago, so its pulls would
  // wait for it (copies stay on their nodes; README "Mesh"). An administrator retiring it says so.
  const fork = (await as("GET", "/rest/api/1.0/admin/git/mesh/nodes")).body.find((n) => n.name === "fork-node");
  assert.equal((await as("PUT", `/rest/api/1.0/admin/git/mesh/nodes/${fork.id}`, { json: { state: "OFFLINE" } })).status, 200);
  const node = await as("POST", "/rest/mirrorfarm/1.0/nodes", { json: { name: "long-poller" } });
  const lease = (waitSeconds) =>
    fetch(`${worker.url}/rest/mirrorfarm/1.0/jobs/lease`, {
      method: "POST",
      headers: { Authorization: `Bearer ${node.body.token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ leaseSeconds: 30, waitSeconds }),
    });
  const drain = async () => {
    for (;;) {
      const more = await lease(0);
      if (more.status === 204) return;
      const j = await more.json();
      await fetch(`${worker.url}/rest/mirrorfarm/1.0/jobs/${j.id}/result`, {
        method: "POST",
        headers: { Authorization: `Bearer ${node.body.token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ leaseId: j.leaseId, outcome: "unchanged" }),
      });
    }
  };
  await drain();
  // Nothing due: the request waits as long as asked, then answers 204.
  let t = Date.now();
  assert.equal((await lease(1)).status, 204);
  const idle = Date.now() - t;
  assert.ok(idle >= 900, `an empty long poll waited ${idle} ms`);
  const delays = [];
  for (let i = 0; i < 5; i++) {
    const waiting = lease(20);
    await new Promise((r) => setTimeout(r, 300));
    t = Date.now();
    const queued = await as("POST", `/rest/mirrorfarm/1.0/repos/${originId}/sync`);
    const queuedAt = Date.now();
    assert.equal(queued.status, 202);
    const answer = await waiting;
    const leasedAt = Date.now();
    assert.equal(answer.status, 200);
    const job = await answer.json();
    delays.push(leasedAt - queuedAt);
    const done = await fetch(`${worker.url}/rest/mirrorfarm/1.0/jobs/${job.id}/release`, {
      method: "POST",
      headers: { Authorization: `Bearer ${node.body.token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ leaseId: job.leaseId }),
    });
    assert.equal(done.status, 204);
    // Drain what the released pull left queued, so the next round starts empty.
    await drain();
  }
  delays.sort((a, b) => a - b);
  console.log(`# long poll: queued → leased in ${delays.join(", ")} ms (median ${delays[2]} ms)`);
  assert.ok(delays[2] < 200, `median start delay ${delays[2]} ms`);
});

test("the fork's password reaches no response and no log line", () => {
  for (const text of responses) assert.ok(!text.includes(PASS), `a response leaked the fork's password: ${text.slice(0, 200)}`);
  assert.ok(!runnerLog.includes(PASS), "the runner log holds the password");
  assert.ok(!worker.logs().includes(PASS), "the Worker log holds the password");
});
