// Soak test of `npm start` as a person runs it: start it (on a free port, with its local D1 and
// node data in a temp dir), wait for health, hammer the API while the farm node it started polls
// for leases and mirrors a real repository, check the service is still up, stop it, and check
// nothing is left running; then start it again on the same state (the printout now looks up an
// existing repository) and do it once more. Start-up used to die on SQLITE_BUSY when a helper
// touched the local D1 beside `wrangler dev`.
//
//   node tests/start_soak.mjs          # SOAK_SECONDS (default 60) of load on the first start,
//                                      # SOAK_STARTS (default 2) starts in all
//
// Needs a built tree (`npm start` runs scripts/setup and scripts/build itself; with everything
// built that takes about a minute). Traffic goes to 127.0.0.1 only; every loop is bounded in time.
import { spawn, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startGitServer } from "./support/git_http.mjs";
import { git, gitEnv, refs } from "./support/git.mjs";
import { freePort } from "./support/worker.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const SOAK_SECONDS = Number(process.env.SOAK_SECONDS || 60);
const STARTS = Number(process.env.SOAK_STARTS || 2);
const START_TIMEOUT_MS = 15 * 60_000; // the first start may build the Worker
const API = "/rest/mirrorfarm/1.0";
const USER = "soak-bot";
const PASS = "s0ak-pa55word";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let failures = 0;
let passes = 0;
function check(ok, what) {
  if (ok) passes++;
  else failures++;
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  return ok;
}


const dir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-soak-"));
const served = (name) => path.join(dir, "served", name);
const work = path.join(dir, "work");
const adminToken = `mfp_soak_${randomBytes(16).toString("hex")}`;
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const env = {
  ...process.env,
  PORT: String(port),
  MIRRORFARM_STATE_DIR: path.join(dir, "state"),
  MIRRORFARM_DATA_DIR: path.join(dir, "node"),
  MIRRORFARM_BOOTSTRAP_TOKEN: adminToken,
  MIRRORFARM_ALLOWED_HOSTS: "127.0.0.1",
  NO_COLOR: "1",
};

async function call(method, url, { token = adminToken, json } = {}) {
  const headers = token ? { "PRIVATE-TOKEN": token } : {};
  if (json !== undefined) headers["Content-Type"] = "application/json";
  try {
    const r = await fetch(base + url, { method, headers, body: json === undefined ? undefined : JSON.stringify(json), signal: AbortSignal.timeout(10_000) });
    const text = await r.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {}
    return { status: r.status, body, text };
  } catch (e) {
    return { status: 0, body: null, text: String(e) };
  }
}

/** Runs `npm start` in its own process group; resolves once the printout is complete. */
async function start(n) {
  const child = spawn("npm", ["start"], { cwd: ROOT, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const run = { child, n, output: "", exited: false };
  child.stdout.on("data", (d) => (run.output += d));
  child.stderr.on("data", (d) => (run.output += d));
  run.exit = new Promise((r) => child.once("exit", (code, signal) => ((run.exited = true), r({ code, signal }))));
  const t0 = Date.now();
  // The printout's last line: the second quick-start command.
  while (!/-H 'PRIVATE-TOKEN: [^']+' http:\S+\/rest\/api\/1\.0\/projects\n/.test(run.output)) {
    if (run.exited) break;
    if (Date.now() - t0 > START_TIMEOUT_MS) break;
    await sleep(250);
  }
  check(!run.exited && run.output.includes("Quick start:"), `start ${n}: npm start came up and printed its quick start (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  return run;
}

/** Stops a start with SIGTERM to its process group, as Ctrl-C would, and checks all of it ended. */
async function stop(run) {
  const pgid = run.child.pid;
  try {
    process.kill(-pgid, "SIGTERM");
  } catch {}
  const ended = await Promise.race([run.exit.then(() => true), sleep(30_000).then(() => false)]);
  check(ended, `start ${run.n}: npm start exited within 30 s of SIGTERM`);
  // Its helpers (wrangler, workerd, the farm node, the cron loop) go with it.
  let left = true;
  for (let i = 0; i < 40 && left; i++) {
    try {
      process.kill(-pgid, 0);
      await sleep(250);
    } catch {
      left = false;
    }
  }
  if (left) {
    const ps = execFileSync("ps", ["-o", "pid,args", "-g", String(pgid)]).toString();
    check(false, `start ${run.n}: processes left running after stop:\n${ps}`);
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {}
  } else check(true, `start ${run.n}: no process of it left running`);
  const r = await call("GET", `${API}/health`, { token: null });
  check(r.status === 0, `start ${run.n}: port ${port} no longer answers`);
  writeFileSync(path.join(dir, `start-${run.n}.log`), run.output);
  mkdirSync(path.join(ROOT, "test-output"), { recursive: true });
  writeFileSync(path.join(ROOT, "test-output", `start-soak-${run.n}.log`), run.output);
}

/** `workers` loops of read requests for `seconds`, plus a sync of the repository every 5 s. */
async function hammer(run, seconds, repoId, statusToken) {
  const stats = { requests: 0, bad: [], syncs: 0 };
  const deadline = Date.now() + seconds * 1000;
  const reads = [
    [`${API}/health`, null],
    ["/api/v4/user", adminToken],
    ["/rest/api/1.0/projects", adminToken],
    [`${API}/nodes`, adminToken],
    ...(repoId ? [[`/api/v4/projects/${repoId}/remote_mirrors`, adminToken], [`${API}/repos/${repoId}/status`, statusToken]] : []),
  ];
  const worker = async (w) => {
    for (let i = w; Date.now() < deadline && !run.exited; i++) {
      const [url, token] = reads[i % reads.length];
      const r = await call("GET", url, { token });
      stats.requests++;
      if (r.status !== 200) stats.bad.push(`${url} -> ${r.status} ${r.text.slice(0, 200)}`);
      if (url === "/api/v4/user" && r.body?.username !== "admin") stats.bad.push(`${url} -> ${r.text.slice(0, 200)}`);
      await sleep(20); // the machine is shared: about 40 requests/s in all
    }
  };
  const syncer = async () => {
    while (repoId && Date.now() < deadline && !run.exited) {
      const r = await call("POST", `${API}/repos/${repoId}/sync`);
      stats.syncs++;
      if (r.status !== 202) stats.bad.push(`sync -> ${r.status} ${r.text.slice(0, 200)}`);
      await sleep(5000);
    }
  };
  await Promise.all([worker(0), worker(1), syncer()]);
  check(!run.exited, `start ${run.n}: still running after ${seconds} s of load`);
  check(stats.bad.length === 0, `start ${run.n}: ${stats.requests} GETs and ${stats.syncs} syncs, ${stats.bad.length} unexpected answers${stats.bad.length ? ":\n  " + stats.bad.slice(0, 10).join("\n  ") : ""}`);
}

async function checkUp(run) {
  check(!run.exited, `start ${run.n}: npm start still running`);
  const h = await call("GET", `${API}/health`, { token: null });
  check(h.status === 200, `start ${run.n}: health answers ${h.status}`);
  const me = await call("GET", "/api/v4/user");
  check(me.status === 200 && me.body?.username === "admin", `start ${run.n}: GET /api/v4/user as the bootstrap admin: ${me.status}`);
  check(!/SQLITE_BUSY|database is locked/i.test(run.output), `start ${run.n}: no SQLITE_BUSY in its output`);
}

/** The repository's pull and push mirror, as a person would set them up through the API. */
async function createRepository(gitServer) {
  execFileSync("git", ["init", "-q", "-b", "main", work], { env: gitEnv });
  git(dir, "init", "-q", "--bare", served("upstream.git"));
  git(dir, "init", "-q", "--bare", served("target.git"));
  git(work, "commit", "-q", "--allow-empty", "-m", "first");
  git(work, "push", "-q", served("upstream.git"), "main");
  const p = await call("POST", "/rest/api/1.0/projects", { json: { key: "SOAK", name: "Soak" } });
  check(p.status === 201, `created project SOAK: ${p.status}`);
  const repo = await call("POST", "/rest/api/1.0/projects/SOAK/repos", { json: { name: "app", upstreamUrl: gitServer.url("upstream.git") } });
  check(repo.status === 201, `created repository SOAK/app: ${repo.status} ${repo.status === 201 ? "" : repo.text}`);
  const m = await call("POST", `/api/v4/projects/${repo.body?.id}/remote_mirrors`, { json: { url: gitServer.url("target.git"), enabled: true } });
  check(m.status === 201, `created a push mirror: ${m.status} ${m.status === 201 ? "" : m.text}`);
  return repo.body?.id;
}

const statusTokenOf = (run) => run.output.match(/token=(mfp_[0-9a-f]+)/)?.[1];

let gitServer;
let current;
const stopAll = async () => {
  if (current && !current.stopped) {
    current.stopped = true;
    await stop(current);
  }
};
process.on("SIGINT", async () => {
  await stopAll();
  process.exit(130);
});
try {
  mkdirSync(path.join(dir, "served"));
  gitServer = await startGitServer({ root: path.join(dir, "served"), username: USER, password: PASS });
  let repoId = null;
  for (let n = 1; n <= STARTS; n++) {
    current = await start(n);
    if (current.exited) break;
    if (n === 1) {
      check(current.output.includes(`Its token is shown this once (stored only hashed): ${adminToken}`), "start 1: created the admin with MIRRORFARM_BOOTSTRAP_TOKEN");
      check(current.output.includes("repo=<repository id>"), "start 1: no repository yet in the demo address");
      repoId = await createRepository(gitServer);
    } else {
      check(current.output.includes(`repo=${repoId}&`), `start ${n}: the demo address names repository ${repoId}`);
    }
    await checkUp(current);
    await hammer(current, n === 1 ? SOAK_SECONDS : Math.min(SOAK_SECONDS, 15), repoId, statusTokenOf(current));
    await checkUp(current);
    if (n === 1) {
      // The node the start runs mirrored the repository meanwhile: upstream → target, through the edge.
      let same = false;
      for (let i = 0; i < 60 && !same; i++) {
        same = refs(served("target.git")) === refs(served("upstream.git"));
        if (!same) await sleep(500);
      }
      check(same, "start 1: the farm node pushed the upstream's refs to the mirror");
      const nodes = await call("GET", `${API}/nodes`);
      const local = nodes.body?.values?.find((x) => x.name.startsWith("local-"));
      check(local && Date.now() - local.lastSeen < 30_000, `start 1: its farm node was seen in the last 30 s: ${nodes.text.slice(0, 300)}`);
    }
    current.stopped = true;
    await stop(current);
  }
} catch (e) {
  check(false, `soak crashed: ${e.stack}`);
} finally {
  await stopAll();
  await gitServer?.close();
  console.log(`logs: test-output/start-soak-*.log`);
  rmSync(dir, { recursive: true, force: true });
}
console.log(`${passes} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
