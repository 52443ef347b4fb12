// `mirrorfarm-runner plan <repo>` and `sync <repo>` against the Worker and real repositories
// served over authenticated smart HTTP: the dry run changes nothing, the one-shot sync works the
// repository's jobs through the edge (leases, reports, status) and exits non-zero on a failure.
// No daemon runs here, so every job is this command's.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startWorker, client, ROOT } from "../support/worker.mjs";
import { startGitServer } from "../support/git_http.mjs";
import { git, gitEnv, refs } from "../support/git.mjs";

const USER = "oneshot-bot";
const PASS = "0nesh0t-pa55w0rd";
const RUNNER = path.join(ROOT, "target/debug/mirrorfarm-runner");
const API = "/rest/mirrorfarm/1.0";

let worker, call, admin, gitServer, dir, nodeToken, repoId, mirrors;

const served = (name) => path.join(dir, "served", name);
const work = () => path.join(dir, "work");
const copy = () => path.join(dir, "node", "repos", `${repoId}.git`);

function commit(cwd, msg) {
  git(cwd, "commit", "-q", "--allow-empty", "-m", msg);
  return git(cwd, "rev-parse", "HEAD");
}

/**
 * Runs the runner as a node (not on a terminal: results come as plain lines). Asynchronously:
 * the git server answering the runner lives in this process's event loop.
 */
function runner(...args) {
  const argv = [...args, "--edge-url", worker.url, "--data-dir", path.join(dir, "node")];
  const env = { ...process.env, MIRRORFARM_NODE_TOKEN: nodeToken, NO_COLOR: "1" };
  return new Promise((resolve) => {
    execFile(RUNNER, argv, { env, encoding: "utf8" }, (error, stdout, stderr) => {
      assert.doesNotMatch(stdout + stderr, new RegExp(PASS), "no credential in the runner's output");
      resolve({ status: error ? error.code : 0, stdout, stderr });
    });
  });
}

before(async () => {
  execFileSync("cargo", ["build", "-q", "-p", "mirrorfarm-runner"], { cwd: ROOT, stdio: "inherit" });
  dir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-oneshot-"));
  mkdirSync(path.join(dir, "served"));
  execFileSync("git", ["init", "-q", "-b", "main", work()], { env: gitEnv });
  commit(work(), "first");
  git(work(), "branch", "feature");
  git(work(), "tag", "-a", "v1", "-m", "one");
  for (const name of ["upstream.git", "target.git", "kept.git"]) git(dir, "init", "-q", "--bare", served(name));
  git(work(), "push", "-q", served("upstream.git"), "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*");
  gitServer = await startGitServer({ root: path.join(dir, "served"), username: USER, password: PASS });
  worker = await startWorker({ allowedHosts: "127.0.0.1", retryBaseMs: 0 });
  call = client(worker.url);
  admin = worker.adminToken;
  assert.equal((await call("POST", "/rest/api/1.0/projects", { token: admin, json: { key: "ONE", name: "One" } })).status, 201);
  const repo = await call("POST", "/rest/api/1.0/projects/ONE/repos", {
    token: admin,
    json: { name: "app", upstreamUrl: gitServer.url("upstream.git") },
  });
  assert.equal(repo.status, 201, repo.text);
  repoId = repo.body.id;
  nodeToken = (await call("POST", `${API}/nodes`, { token: admin, json: { name: "oneshot-node" } })).body.token;
  mirrors = [];
  for (const [name, keep] of [["target.git", false], ["kept.git", true]]) {
    const m = await call("POST", `/api/v4/projects/${repoId}/remote_mirrors`, {
      token: admin,
      json: { url: gitServer.url(name), enabled: true, keep_divergent_refs: keep },
    });
    assert.equal(m.status, 201, m.text);
    mirrors.push(m.body);
  }
});

after(async () => {
  await gitServer?.close();
  await worker?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("plan <repo> shows every ref's action and changes nothing", async () => {
  const r = await runner("plan", "ONE/app");
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^pull from http:\/\/\*\*\*\*\*:\*\*\*\*\*@127\.0\.0\.1:\d+\/upstream\.git$/m);
  assert.match(r.stdout, /^create +[0-9a-f]{40} refs\/heads\/main +\(/m);
  assert.match(r.stdout, /^create +[0-9a-f]{40} refs\/tags\/v1 /m);
  assert.match(r.stdout, /3 to update, 0 held, 0 unchanged/);
  assert.match(r.stdout, /push to http:\/\/\*\*\*\*\*:\*\*\*\*\*@127\.0\.0\.1:\d+\/target\.git\n +\(no copy on this node yet/);
  assert.equal(existsSync(copy()), false, "no copy was made");
  assert.equal(refs(served("target.git")), "", "the target is untouched");
});

test("sync <repo> pulls then pushes every mirror through the edge and reports", async () => {
  const r = await runner("sync", String(repoId));
  assert.equal(r.status, 0, r.stdout + r.stderr);
  // The pull goes first (the mirrors' pushes queued when they were created wait for it), and
  // the pushes it queues join those: three jobs, each run once.
  const lines = r.stdout.trim().split("\n");
  assert.match(lines[0], /^✓ pull from http:\/\/\*\*\*\*\*:\*\*\*\*\*@127\.0\.0\.1:\d+\/upstream\.git: in sync$/);
  assert.match(r.stdout, /^✓ push to .*\/target\.git: in sync$/m);
  assert.match(r.stdout, /^✓ push to .*\/kept\.git: in sync$/m);
  assert.match(r.stdout, /^3 job\(s\) run here, 0 failed$/m);
  assert.equal(refs(served("target.git")), refs(served("upstream.git")));
  const listed = (await call("GET", `/api/v4/projects/${repoId}/remote_mirrors`, { token: admin })).body;
  assert.deepEqual(listed.map((m) => m.update_status), ["finished", "finished"]);
  const jobs = (await call("GET", `${API}/repos/${repoId}/jobs`, { token: admin })).body.values;
  assert.equal(jobs.length, 3, JSON.stringify(jobs));
  assert.ok(jobs.every((j) => j.state === "DONE"), JSON.stringify(jobs));
  assert.equal(jobs.find((j) => j.kind === "PULL_MIRROR").reason, "MANUAL");
});

test("sync <repo> on a terminal draws progress and still prints each result", async () => {
  // `script` gives the runner a pseudo-terminal; its output is the terminal's.
  const argv = [RUNNER, "sync", "ONE/app", "--edge-url", worker.url, "--data-dir", path.join(dir, "node")];
  const env = { ...process.env, MIRRORFARM_NODE_TOKEN: nodeToken, TERM: "xterm" };
  const out = await new Promise((resolve, reject) => {
    execFile("script", ["-qec", argv.join(" "), "/dev/null"], { env, encoding: "utf8" }, (error, stdout) =>
      error ? reject(new Error(`${error.message}\n${stdout}`)) : resolve(stdout),
    );
  });
  assert.doesNotMatch(out, new RegExp(PASS));
  const text = out.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "");
  assert.match(text, /ONE\/app \[█{8}░{16}\] 1\/3 jobs/u, "the overall bar was drawn and advanced");
  assert.match(text, /\S push to .*kept\.git \d+s/u, "a spinner (with its elapsed time) per running job");
  assert.match(text, /✓ pull from .*upstream\.git: in sync/);
  assert.match(out, /3 job\(s\) run here, 0 failed/);
});

test("plan after an upstream change: fast-forwards planned everywhere, copy and targets unmoved", async () => {
  const before = { copy: refs(copy()), target: refs(served("target.git")) };
  const head = commit(work(), "second");
  git(work(), "push", "-q", served("upstream.git"), "main");
  const r = await runner("plan", String(repoId));
  assert.equal(r.status, 0, r.stderr);
  const [pull, target, kept] = r.stdout.split("\n\n");
  // A dry run asks ancestry even where the sync itself would not (exact pulls and keep=false
  // mirrors overwrite, as GitLab's do): main is a fast-forward everywhere.
  for (const [section, name] of [[pull, "upstream"], [target, "target"], [kept, "kept"]]) {
    assert.match(section, new RegExp(`^(pull from|push to) .*/${name}\\.git$`, "m"));
    assert.match(section, new RegExp(`^fast-forward +${head} refs/heads/main `, "m"));
    assert.match(section, /1 to update, 0 held, 2 unchanged/);
  }
  assert.deepEqual({ copy: refs(copy()), target: refs(served("target.git")) }, before);
});

test("sync <repo> exits non-zero when a mirror keeps diverged refs", async () => {
  // kept.git gets a commit of its own on main: keep_divergent_refs skips it and fails the update.
  const side = path.join(dir, "side");
  execFileSync("git", ["clone", "-q", "-b", "main", served("kept.git"), side], { env: gitEnv });
  commit(side, "only on the target");
  git(side, "push", "-q", "origin", "main");
  const r = await runner("sync", "ONE/app");
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /^✗ push to .*\/kept\.git: .*diverged/m);
  assert.match(r.stdout, /^✓ push to .*\/target\.git: in sync$/m);
  assert.match(r.stderr, /1 update\(s\) failed/);
  assert.equal(git(served("target.git"), "rev-parse", "refs/heads/main"), git(work(), "rev-parse", "HEAD"));
  const kept = (await call("GET", `/api/v4/projects/${repoId}/remote_mirrors/${mirrors[1].id}`, { token: admin })).body;
  assert.equal(kept.update_status, "failed");
  assert.match(kept.last_error, /refs\/heads\/main/);
});
