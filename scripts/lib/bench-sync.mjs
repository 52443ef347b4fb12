// End-to-end sync benchmarks: the Worker under workerd with a real local D1 and Durable Object, a
// farm node (the `native` build), and real repositories served over authenticated smart HTTP.
// Each figure is compared with plain git doing the same transfer by hand, in the same run. A
// report, not a test: it prints figures and says which targets are met.
//
// 1. Push-to-mirror latency: an upstream push, its webhook delivered, until the push mirror has
//    the commit (median of several), against `git fetch` + `git push` by hand. Target ≤ 1.5×.
// 2. Fork sync of a fork with 10,000 branches, 100 of them behind the origin: from the origin's
//    sync being asked for until the fork has all 100, against plain git fetching the origin and
//    pushing those 100 refs. Target ≤ 1.2×.
import { spawn, execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startWorker, client, ROOT } from "../../tests/support/worker.mjs";
import { startGitServer } from "../../tests/support/git_http.mjs";
import { git, gitEnv } from "../../tests/support/git.mjs";
import { record } from "./bench-record.mjs";

const USER = "bench";
const PASS = "bench-pa55";
const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const BRANCHES = 10_000;
const BEHIND = 100;
const RUNNER = path.join(ROOT, "target/native/mirrorfarm-runner");

const dir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-bench-sync-"));
const served = (name) => path.join(dir, "served", name);
mkdirSync(path.join(dir, "served"));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (x) => `${x.toFixed(0)} ms`;
const sleep = (t) => new Promise((r) => setTimeout(r, t));
const tip = (repo, ref) => git(repo, "rev-parse", ref);
// Git that talks to the HTTP server must not block: the server runs in this process.
const run = promisify(execFile);
const gitNet = async (cwd, ...args) => (await run("git", ["-C", cwd, ...args], { env: gitEnv })).stdout.trim();
const tipNet = (repo, ref) => gitNet(repo, "rev-parse", ref).catch(() => null);
// What a bare repository's branch points at, read as git writes it after a push (a loose ref
// file), else asked of git: the latency loop polls every 5 ms, and a git process per look would
// take CPU from the node it measures.
const tipNow = async (repo, branch) => {
  try {
    return readFileSync(path.join(repo, "refs/heads", branch), "utf8").trim();
  } catch {
    return tipNet(repo, `refs/heads/${branch}`);
  }
};

async function until(pred, what, limit = 120_000) {
  const deadline = Date.now() + limit;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

// The fork sync's repositories, made before any connection to the Worker is open: the git calls
// below block this process for seconds, longer than the Worker's keep-alive, and a request sent
// on a pooled connection the Worker closed meanwhile fails ("other side closed").
const seed = path.join(dir, "seed");
execFileSync("git", ["init", "-q", "-b", "main", seed], { env: gitEnv });
for (let i = 0; i < 50; i++) git(seed, "commit", "-q", "--allow-empty", "-m", `c${i}`);
const commits = git(seed, "rev-list", "main").split("\n");
const lines = [];
for (let b = 0; b < BRANCHES; b++) lines.push(`create refs/heads/b${String(b).padStart(5, "0")} ${commits[b % commits.length]}`);
execFileSync("git", ["-C", seed, "update-ref", "--stdin"], { input: lines.join("\n") + "\n", env: gitEnv });
for (const name of ["origin.git", "fork.git", "plain-fork.git"]) {
  execFileSync("git", ["clone", "-q", "--bare", seed, served(name)], { env: gitEnv });
}

execFileSync("cargo", ["build", "-q", "--profile", "native", "-p", "mirrorfarm-runner"], { cwd: ROOT, stdio: "inherit" });
const gitServer = await startGitServer({ root: path.join(dir, "served"), username: USER, password: PASS });
const worker = await startWorker({ allowedHosts: "127.0.0.1" });
const call = client(worker.url);
const token = worker.adminToken;
const as = (method, url, json) => call(method, url, { token, json });
let runner;
let runnerLog = "";
try {
  await as("POST", "/rest/api/1.0/projects", { key: "BS", name: "Bench sync" });
  const node = await as("POST", "/rest/mirrorfarm/1.0/nodes", { name: "bench-node" });
  runner = spawn(RUNNER, ["run", "--edge-url", worker.url, "--data-dir", path.join(dir, "node"), "--concurrency", "2"], {
    env: { ...process.env, MIRRORFARM_NODE_TOKEN: node.body.token, MIRRORFARM_LOG: process.env.BENCH_RUNNER_LOG ?? "warn" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  runner.stdout.on("data", (d) => (runnerLog += d));
  runner.stderr.on("data", (d) => (runnerLog += d));

  // 1. Push-to-mirror latency.
  const work = path.join(dir, "work");
  execFileSync("git", ["init", "-q", "--bare", "-b", "main", served("up.git")], { env: gitEnv });
  execFileSync("git", ["init", "-q", "--bare", "-b", "main", served("target.git")], { env: gitEnv });
  execFileSync("git", ["init", "-q", "--bare", "-b", "main", served("by-hand.git")], { env: gitEnv });
  execFileSync("git", ["clone", "-q", served("up.git"), work], { env: gitEnv });
  git(work, "commit", "-q", "--allow-empty", "-m", "start");
  git(work, "push", "-q", "origin", "HEAD:main");
  const repo = (await as("POST", "/rest/api/1.0/projects/BS/repos", { name: "app", upstreamUrl: gitServer.url("up.git") })).body;
  const secret = (await as("PUT", `/rest/mirrorfarm/1.0/repos/${repo.id}/webhook`)).body.secret;
  await as("POST", `/api/v4/projects/${repo.id}/remote_mirrors`, { url: gitServer.url("target.git"), enabled: true });
  await until(async () => (await tipNet(served("target.git"), "main")) === tip(served("up.git"), "main"), "the first push");
  const handCopy = path.join(dir, "hand.git");
  await run("git", ["clone", "-q", "--mirror", gitServer.url("up.git"), handCopy], { env: gitEnv });
  const ours = [];
  const answered = [];
  const byHand = [];
  for (let i = 0; i < RUNS; i++) {
    git(work, "commit", "-q", "--allow-empty", "-m", `change ${i}`);
    git(work, "push", "-q", "origin", "HEAD:main");
    const head = tip(work, "HEAD");
    const body = JSON.stringify({ ref: "refs/heads/main", after: head });
    const started = performance.now();
    const hook = await fetch(`${worker.url}/rest/mirrorfarm/1.0/repos/${repo.id}/webhook`, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-Hub-Signature-256": "sha256=" + createHmac("sha256", secret).update(body).digest("hex"),
      },
      body,
    });
    if (hook.status !== 202) throw new Error(`webhook answered ${hook.status}`);
    answered.push(performance.now() - started);
    await until(async () => (await tipNow(served("target.git"), "main")) === head, "the mirror");
    ours.push(performance.now() - started);
    const t = performance.now();
    await gitNet(handCopy, "fetch", "-q", "--prune", "origin");
    await gitNet(handCopy, "push", "-q", "--mirror", gitServer.url("by-hand.git"));
    byHand.push(performance.now() - t);
  }
  const latency = median(ours) / median(byHand);
  console.log(`push-to-mirror latency, median of ${RUNS}: ${ms(median(ours))} (webhook → mirror has the commit)`);
  console.log(`  of which the webhook's answer (verified, syncs queued): ${ms(median(answered))}`);
  console.log(`  by hand (git fetch + git push --mirror): ${ms(median(byHand))}`);
  console.log(`  ratio ${latency.toFixed(2)}× (target ≤ 1.5×: ${latency <= 1.5 ? "met" : "MISSED"})`);
  record("push-to-mirror latency vs git fetch + git push by hand", median(ours), "ms", median(byHand), "≤ 1.5×", latency <= 1.5);
  console.log(`  each run: ${ours.map(ms).join(", ")}`);

  // 2. Fork sync with 10,000 branches, 100 behind.
  const origin = (await as("POST", "/rest/api/1.0/projects/BS/repos", { name: "big", upstreamUrl: gitServer.url("origin.git") })).body;
  // In project BS: without a project a fork goes to the caller's personal project.
  const fork = await as("POST", "/rest/api/1.0/projects/BS/repos/big", { name: "big-fork", project: { key: "BS" }, url: gitServer.url("fork.git") });
  if (fork.status !== 201) throw new Error(fork.text);
  const enable = await as("POST", "/rest/sync/1.0/projects/BS/repos/big-fork", { enabled: true });
  if (enable.status !== 200) throw new Error(`enable answered ${enable.status}: ${enable.text}\n${runnerLog}`);
  // Plain git's copy of the origin, current before the origin moves (as the node's is).
  const plain = path.join(dir, "plain.git");
  await run("git", ["clone", "-q", "--bare", gitServer.url("origin.git"), plain], { env: gitEnv });
  // 100 branches move on in the origin: one new commit each.
  const moved = [];
  const update = [];
  for (let b = 0; b < BEHIND; b++) {
    const name = `refs/heads/b${String(b * 97).padStart(5, "0")}`;
    // (Without blocking: the Worker's connections stay open meanwhile.)
    const parent = await gitNet(served("origin.git"), "rev-parse", name);
    const commit = await gitNet(served("origin.git"), "commit-tree", `${parent}^{tree}`, "-p", parent, "-m", `moved ${b}`);
    update.push(`update ${name} ${commit}`);
    moved.push([name, commit]);
  }
  execFileSync("git", ["-C", served("origin.git"), "update-ref", "--stdin"], { input: update.join("\n") + "\n", env: gitEnv });
  const forkHas = async () => {
    const listing = await gitNet(served("fork.git"), "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads");
    const have = new Map(listing.split("\n").map((l) => l.split(" ")));
    return moved.every(([name, commit]) => have.get(name) === commit);
  };
  let started = performance.now();
  const sync = await as("POST", `/rest/mirrorfarm/1.0/repos/${origin.id}/sync`);
  if (sync.status !== 202) throw new Error(sync.text);
  await until(forkHas, "the fork's 100 branches", 300_000);
  const forkSync = performance.now() - started;
  started = performance.now();
  await gitNet(plain, "fetch", "-q", "origin", "+refs/heads/*:refs/heads/*");
  await gitNet(plain, "push", "-q", gitServer.url("plain-fork.git"), ...moved.map(([n]) => `${n}:${n}`));
  const plainGit = performance.now() - started;
  const forkRatio = forkSync / plainGit;
  console.log(`fork sync, ${BRANCHES} branches, ${BEHIND} behind: ${ms(forkSync)} (origin sync asked → fork has all ${BEHIND})`);
  console.log(`  plain git (fetch the origin, push the ${BEHIND} refs): ${ms(plainGit)}`);
  console.log(`  ratio ${forkRatio.toFixed(2)}× (target ≤ 1.2×: ${forkRatio <= 1.2 ? "met" : "MISSED"})`);
  record(`fork sync, ${BRANCHES} branches, ${BEHIND} behind, vs plain git`, forkSync, "ms", plainGit, "≤ 1.2×", forkRatio <= 1.2);
  console.log(`  refs/s: ${(BRANCHES / (forkSync / 1000)).toFixed(0)} compared, ${(BEHIND / (forkSync / 1000)).toFixed(0)} moved`);
} finally {
  if (runner && runner.exitCode === null) {
    runner.kill("SIGTERM");
    await new Promise((r) => runner.once("exit", r));
  }
  if (runnerLog.trim()) writeFileSync(path.join(dir, "..", "mirrorfarm-bench-sync-runner.log"), runnerLog);
  await gitServer.close();
  await worker.stop();
  rmSync(dir, { recursive: true, force: true });
}
