// Load against the real thing: the built Worker under workerd with a fresh local D1, and a real
// farm node's clone server. Two parts:
//
// 1. autocannon at `connections` for `seconds`, a mix of reads (project and repository lists,
//    a remote-mirror list, a status), writes with unique names (projects, disabled remote
//    mirrors, repository labels) and node leases (`POST …/jobs/lease` with a registered node's
//    token, for a repository with no work, so the lease query runs in full and answers 204).
//    Every acknowledged (2xx) write is read back afterwards and must exist.
// 2. `clones` concurrent `git clone --mirror`s of a repository from a farm node's HTTP clone
//    server; each must succeed with the upstream's content.
//
// Expected statuses: 200, 201 and 204 (a lease with nothing to do). Rate limits stay off (the
// default), so a 429 is unexpected like every other non-2xx answer.
//
// At 200 connections some POSTs have been answered 503 "Your worker restarted mid-request"
// although nothing restarted: `wrangler dev`'s proxy (a second workerd) forwards each request over
// pooled keep-alive connections whose 5 s idle limit equals the runtime's own, so a request can be
// written into a connection the runtime is closing and never reach the Worker
// (scripts/lib/proxy_race.mjs reproduces it, and explains it with the sources). LOAD_DIRECT=1 sends
// the load to the runtime's own socket instead (`startWorker({direct: true})`); that path has
// shown ECONNRESETs of its own under this mix, not yet explained, so it is not the default.
//
// `npm run load` runs it at 200 connections for 60 s and 100 clones (LOAD_SECONDS,
// LOAD_CONNECTIONS, LOAD_CLONES override); `tests/e2e/load.test.mjs` runs a shorter one in
// `npm test`. Exits non-zero on an unexpected status, a lost write or a failed clone.
import { execFile, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { startWorker, client, freePort, ROOT, OUTPUT } from "../../tests/support/worker.mjs";
import { startGitServer } from "../../tests/support/git_http.mjs";
import { contentHash, git, gitEnv } from "../../tests/support/git.mjs";

const run = promisify(execFile);
const RUNNER = path.join(ROOT, "target/debug/mirrorfarm-runner");
const API = "/rest/mirrorfarm/1.0";
const EXPECTED = new Set([200, 201, 204]);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

/** Runs `task` over `items` with at most `limit` at once; returns the results in order. */
async function pool(items, limit, task) {
  const out = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await task(items[i], i);
      }
    }),
  );
  return out;
}

/** The API part: returns its figures and what went wrong (`unexpected`, `lost`). */
async function apiLoad({ worker, seconds, connections, log }) {
  const call = client(worker.url);
  const token = worker.adminToken;
  const as = async (method, url, opts = {}) => {
    const r = await call(method, url, { token, ...opts });
    if (r.status >= 300) throw new Error(`${method} ${url}: ${r.status} ${r.text}`);
    return r.body;
  };
  await as("POST", "/rest/api/1.0/projects", { json: { key: "LOAD", name: "Load" } });
  const repo = await as("POST", "/rest/api/1.0/projects/LOAD/repos", { json: { name: "reads" } });
  for (const i of [1, 2, 3]) {
    await as("POST", `/api/v4/projects/${repo.id}/remote_mirrors`, { json: { url: `https://bot:pw@example.com/seed${i}.git`, enabled: false } });
  }
  const writes = await as("POST", "/rest/api/1.0/projects/LOAD/repos", { json: { name: "writes" } });
  const idle = await as("POST", "/rest/api/1.0/projects/LOAD/repos", { json: { name: "idle" } });
  const nodeToken = (await as("POST", `${API}/nodes`, { json: { name: "load-node" } })).token;

  const tag = `${process.pid.toString(36)}${Date.now().toString(36)}`.toUpperCase();
  let seq = 0;
  const acked = { project: [], mirror: [], label: [] };
  const json = { "content-type": "application/json", "PRIVATE-TOKEN": token };
  const read = (p) => ({ method: "GET", path: p, headers: { "PRIVATE-TOKEN": token } });
  const write = (kind, p, body) => ({
    method: "POST",
    path: p,
    headers: json,
    setupRequest(req, context) {
      const n = ++seq;
      context.name = body(n);
      return { ...req, body: JSON.stringify(context.name) };
    },
    onResponse(status, text, context) {
      if (status >= 200 && status < 300) acked[kind].push(kind === "mirror" ? JSON.parse(text).id : context.name);
    },
  });
  // Each connection walks this list in order, round and round: 4 reads, 3 writes, 2 leases.
  // Answers outside 2xx are counted per route as well as per status.
  const failedByRoute = {};
  const counted = (label, req) => {
    const inner = req.onResponse;
    return {
      ...req,
      onResponse(status, text, context) {
        if (status < 200 || status >= 300) failedByRoute[`${label} ${status}`] = (failedByRoute[`${label} ${status}`] ?? 0) + 1;
        inner?.(status, text, context);
      },
    };
  };
  const lease = { method: "POST", path: `${API}/jobs/lease`, headers: { "content-type": "application/json", Authorization: `Bearer ${nodeToken}` }, body: JSON.stringify({ leaseSeconds: 30, repositoryId: idle.id }) };
  const requests = [
    counted("GET projects", read("/rest/api/1.0/projects?limit=25")),
    counted("POST projects", write("project", "/rest/api/1.0/projects", (n) => ({ key: `L${tag}${n}`, name: `load ${tag} ${n}` }))),
    counted("GET remote_mirrors", read(`/api/v4/projects/${repo.id}/remote_mirrors`)),
    counted("POST jobs/lease", lease),
    counted("POST remote_mirrors", write("mirror", `/api/v4/projects/${writes.id}/remote_mirrors`, (n) => ({ url: `https://bot:pw@example.com/${tag}-${n}.git`, enabled: false }))),
    counted("GET status", read(`${API}/repos/${repo.id}/status`)),
    counted("POST labels", write("label", "/rest/api/1.0/projects/LOAD/repos/writes/labels", (n) => ({ name: `l-${tag}-${n}`.toLowerCase() }))),
    counted("GET repos", read("/rest/api/1.0/projects/LOAD/repos?limit=25")),
    counted("POST jobs/lease", lease),
  ];
  log(`# API load: ${connections} connections for ${seconds} s against ${worker.url} (workerd, local D1)`);
  const connectionErrors = {};
  const result = await new Promise((resolve, reject) => {
    const instance = autocannon({ url: worker.url, connections, duration: seconds, requests, timeout: 30 }, (err, r) => (err ? reject(err) : resolve(r)));
    instance.on("error", reject);
    instance.on("reqError", (e) => (connectionErrors[e.code ?? e.message] = (connectionErrors[e.code ?? e.message] ?? 0) + 1));
  });
  const byStatus = Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([s, v]) => [s, v.count]));
  const unexpected = Object.entries(byStatus).filter(([s]) => !EXPECTED.has(Number(s)));
  const figures = {
    requests: result.requests.total,
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    max: result.latency.max,
    byStatus,
    errors: result.errors,
    timeouts: result.timeouts,
    acked: { projects: acked.project.length, mirrors: acked.mirror.length, labels: acked.label.length },
    failedByRoute,
  };
  log(`# API load: ${figures.requests} requests, ${figures.rps.toFixed(0)} req/s, latency p50 ${figures.p50} ms, p99 ${figures.p99} ms, max ${figures.max} ms`);
  log(`# API load: by status ${JSON.stringify(byStatus)}; connection errors ${figures.errors} ${JSON.stringify(connectionErrors)}, timeouts ${figures.timeouts}; unexpected: ${unexpected.length ? JSON.stringify(Object.fromEntries(unexpected)) : "none"}`);
  if (Object.keys(failedByRoute).length) log(`# API load: non-2xx by route ${JSON.stringify(failedByRoute)}`);

  // Every acknowledged write, read back one by one (20 at a time).
  const started = Date.now();
  const missing = [];
  const check = (label, url) => async () => {
    const r = await call("GET", url, { token });
    if (r.status !== 200) missing.push(`${label}: GET ${url} → ${r.status}`);
  };
  const checks = [
    ...acked.project.map((p) => check(`project ${p.key}`, `/rest/api/1.0/projects/${p.key}`)),
    ...acked.mirror.map((id) => check(`mirror ${id}`, `/api/v4/projects/${writes.id}/remote_mirrors/${id}`)),
    ...acked.label.map((l) => check(`label ${l.name}`, `/rest/api/1.0/labels/${l.name}`)),
  ];
  await pool(checks, 20, (f) => f());
  log(`# API load: ${checks.length} acknowledged writes read back in ${Date.now() - started} ms; missing: ${missing.length}`);
  for (const m of missing.slice(0, 20)) log(`#   ${m}`);
  return { figures, unexpected, lost: missing };
}

/** The clone part: a node serving one repository, `clones` concurrent clones of it. */
async function cloneLoad({ worker, clones, dir, log }) {
  const call = client(worker.url);
  const token = worker.adminToken;
  mkdirSync(path.join(dir, "served"));
  const up = path.join(dir, "served", "up.git");
  const work = path.join(dir, "work");
  execFileSync("git", ["init", "-q", "-b", "main", work], { env: gitEnv });
  for (let i = 0; i < 20; i++) {
    writeFileSync(path.join(work, `f${i % 5}.txt`), `line ${i}\n`.repeat(200 + i));
    git(work, "add", ".");
    git(work, "commit", "-q", "-m", `commit ${i}`);
    if (i % 4 === 0) git(work, "branch", `b${i}`);
  }
  git(work, "tag", "-a", "v1", "-m", "release 1");
  execFileSync("git", ["clone", "-q", "--bare", work, up], { env: gitEnv });
  const gitServer = await startGitServer({ root: path.join(dir, "served"), username: "load", password: "load-pa55" });
  const repo = (await call("POST", "/rest/api/1.0/projects/LOAD/repos", { token, json: { name: "cloned", upstreamUrl: gitServer.url("up.git") } })).body;
  const nodeToken = (await call("POST", `${API}/nodes`, { token, json: { name: "clone-node" } })).body.token;
  const port = await freePort();
  let nodeLog = "";
  const node = spawn(RUNNER, ["run", "--edge-url", worker.url, "--data-dir", path.join(dir, "node"), "--poll-ms", "200", "--serve", `127.0.0.1:${port}`], {
    env: { ...process.env, MIRRORFARM_NODE_TOKEN: nodeToken, MIRRORFARM_LOG: "info", NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  node.stdout.on("data", (d) => (nodeLog += d));
  node.stderr.on("data", (d) => (nodeLog += d));
  try {
    await call("POST", `${API}/repos/${repo.id}/sync`, { token });
    let href;
    for (const deadline = Date.now() + 60_000; !href; await sleep(200)) {
      if (Date.now() > deadline) throw new Error(`the node never served the repository:\n${nodeLog.slice(-3000)}`);
      const r = await call("GET", "/rest/api/1.0/projects/LOAD/repos/cloned", { token });
      href = r.body?.links?.clone?.find((l) => l.name === "http")?.href;
    }
    const url = href.replace("http://", `http://x-token-auth:${token}@`);
    const want = contentHash(up);
    log(`# clone load: ${clones} concurrent git clone --mirror of a ${execFileSync("du", ["-sk", up]).toString().split("\t")[0]} KB repository from a farm node's clone server`);
    const started = Date.now();
    const results = await Promise.all(
      Array.from({ length: clones }, async (_, i) => {
        const into = path.join(dir, "clones", String(i));
        const t = Date.now();
        try {
          await run("git", ["clone", "-q", "--mirror", url, into], { env: gitEnv, maxBuffer: 1 << 20 });
          const ok = contentHash(into) === want;
          return { ok, ms: Date.now() - t, why: ok ? null : "content differs" };
        } catch (e) {
          return { ok: false, ms: Date.now() - t, why: String(e.stderr || e.message).replaceAll(token, "…").slice(0, 300) };
        }
      }),
    );
    const wall = Date.now() - started;
    const times = results.map((r) => r.ms).sort((x, y) => x - y);
    const failed = results.filter((r) => !r.ok);
    const figures = { clones, wallMs: wall, perSecond: clones / (wall / 1000), p50: pct(times, 50), p99: pct(times, 99), failed: failed.length };
    log(`# clone load: ${clones - failed.length}/${clones} succeeded with the upstream's content in ${wall} ms (${figures.perSecond.toFixed(1)} clones/s), per clone p50 ${figures.p50} ms, p99 ${figures.p99} ms`);
    for (const f of failed.slice(0, 5)) log(`#   failed: ${f.why}`);
    return { figures, failures: failed.map((f) => f.why) };
  } finally {
    const exited = new Promise((r) => (node.exitCode !== null ? r() : node.once("exit", r)));
    node.kill("SIGTERM");
    await exited;
    await gitServer.close();
    mkdirSync(OUTPUT, { recursive: true });
    writeFileSync(path.join(OUTPUT, "load-clone-node.log"), nodeLog);
  }
}

/** Starts a Worker, runs both parts, stops everything; returns `{api, clones}`. */
export async function runLoad({ seconds = 60, connections = 200, clones = 100, log = console.log } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-load-"));
  const worker = await startWorker({ allowedHosts: "127.0.0.1", retryBaseMs: 200, direct: process.env.LOAD_DIRECT === "1" });
  try {
    const api = await apiLoad({ worker, seconds, connections, log });
    const cloned = await cloneLoad({ worker, clones, dir, log });
    // What the Worker itself logged as failing (its request lines of 500 and up, D1 trouble), for
    // the record.
    const workerErrors = worker.logs().split("\n").filter((l) => /^\w+ \S+ -> 5\d\d$|^\[wrangler:\w+\] \w+ \S+ 5\d\d |SQLITE_BUSY|database is locked|D1_ERROR/.test(l));
    if (workerErrors.length) log(`# worker log: ${workerErrors.length} error lines, e.g. ${workerErrors.slice(0, 3).join(" | ")}`);
    return { api, clones: cloned, workerErrors };
  } finally {
    await worker.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = await runLoad({
    seconds: Number(process.env.LOAD_SECONDS ?? 60),
    connections: Number(process.env.LOAD_CONNECTIONS ?? 200),
    clones: Number(process.env.LOAD_CLONES ?? 100),
  });
  const bad = [];
  if (r.api.unexpected.length) bad.push(`unexpected statuses ${JSON.stringify(Object.fromEntries(r.api.unexpected))}`);
  if (r.api.figures.errors || r.api.figures.timeouts) bad.push(`${r.api.figures.errors} connection errors, ${r.api.figures.timeouts} timeouts`);
  if (r.api.lost.length) bad.push(`${r.api.lost.length} acknowledged writes missing`);
  if (r.clones.failures.length) bad.push(`${r.clones.failures.length} clones failed`);
  if (bad.length) {
    console.error(`load: ${bad.join("; ")}`);
    process.exit(1);
  }
  console.log("load: every answer expected, every acknowledged write read back, every clone right");
}
