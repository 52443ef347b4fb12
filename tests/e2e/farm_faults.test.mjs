// A farm of three nodes under faults: leases spread over the nodes, and a node SIGKILLed in the
// middle of a farm sync, a fork sync and a push-mirror push. Its leases expire (5 s here), the
// other nodes finish its work at once (a holder whose lease lapsed keeps no copy affinity), no
// job is lost, every ref update lands once and fast-forward only, and the content equals the
// upstream's. A node restarted on its data directory resumes with its copies.
//
// Two Workers under workerd: A is an upstream Bitbucket (its node serves its copies) and B the
// farm with nodes n1, n2, n3. "Mid-job" is made certain, not hoped for: the git traffic the
// nodes make passes through gates that hold it until the victim has been killed.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { createServer, request as httpRequest } from "node:http";
import { existsSync, mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startWorker, client, freePort, ROOT, OUTPUT } from "../support/worker.mjs";
import { startGitServer } from "../support/git_http.mjs";
import { contentHash, git, gitEnv } from "../support/git.mjs";

const USER = "fault-bot";
const PASS = "fault-http-pa55";
const RUNNER = path.join(ROOT, "target/debug/mirrorfarm-runner");
const API = "/rest/mirrorfarm/1.0";
const UP = "/rest/mirroring/1.0/upstreamServers";
const LEASE_SECONDS = "5"; // the edge's shortest lease
const FARM_REPOS = 12;
const LOCAL_REPOS = 6;

let dir, gitServer, a, b, callA, callB, nodeA, upstreamId, gateA, gateUp;
let nodeALog = "";
const nodes = {}; // name → { token, child, logs: [string per process] }
const local = []; // { name, id, mirrorId }
const kills = [];
const responses = [];

const served = (name) => path.join(dir, "served", `${name}.git`);
const work = (name) => path.join(dir, "work", name);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function caller(worker) {
  const call = client(worker.url);
  return async (method, url, opts = {}) => {
    const r = await call(method, url, { token: worker.adminToken, ...opts });
    responses.push(`${method} ${url} → ${r.status} ${r.text}`);
    return r;
  };
}

/** A reverse proxy to 127.0.0.1:`port` that, while `hold` is set, holds every upload-pack POST
 * (fetches, clones and protocol-v2 listings) until released; a held request whose client died
 * meanwhile is dropped, as a server would see it. */
async function startGate(port) {
  const state = { hold: false, held: [] };
  const server = createServer((req, res) => {
    const go = () => {
      if (req.socket.destroyed) return res.destroy();
      const up = httpRequest({ host: "127.0.0.1", port, method: req.method, path: req.url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      });
      up.on("error", () => res.destroy());
      req.pipe(up);
    };
    if (state.hold && req.method === "POST" && req.url.endsWith("/git-upload-pack")) state.held.push(go);
    else go();
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: server.address().port,
    state,
    release() {
      state.hold = false;
      for (const go of state.held.splice(0)) go();
    },
    close() {
      server.closeAllConnections();
      return new Promise((r) => server.close(r));
    },
  };
}

/** A bare repository whose every ref update is logged (receive-pack included). */
function bareTarget(name) {
  execFileSync("git", ["init", "-q", "--bare", "-b", "main", served(name)], { env: gitEnv });
  git(served(name), "config", "core.logAllRefUpdates", "always");
}

/** An upstream repository with main, dev and an annotated tag. */
function makeUpstream(name) {
  execFileSync("git", ["init", "-q", "--bare", "-b", "main", served(name)], { env: gitEnv });
  execFileSync("git", ["init", "-q", "-b", "main", work(name)], { env: gitEnv });
  git(work(name), "remote", "add", "origin", served(name));
  advance(name, `first of ${name}`);
  git(work(name), "branch", "dev");
  git(work(name), "tag", "-a", "v1", "-m", "release 1");
  git(work(name), "push", "-q", "origin", "main", "dev", "v1");
}

/** A new commit on main (and dev fast-forwarded to it), pushed upstream. */
function advance(name, text) {
  writeFileSync(path.join(work(name), "file.txt"), `${text}\n`);
  git(work(name), "add", "file.txt");
  git(work(name), "commit", "-q", "-m", text);
  git(work(name), "push", "-q", "origin", "HEAD:main");
  if (git(work(name), "branch", "--list", "dev")) {
    git(work(name), "branch", "-f", "dev", "HEAD");
    git(work(name), "push", "-q", "origin", "dev");
  }
}

/** Every update in a bare repository's reflogs: each one fast-forward (or a creation), and no
 * ref given the same value twice (an update applied once). Returns how many updates. */
function assertUpdatesOnceAndFastForward(repo) {
  const logs = path.join(repo, "logs");
  let updates = 0;
  const walk = (d, prefix) => {
    for (const e of existsSync(d) ? readdirSync(d, { withFileTypes: true }) : []) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p, `${prefix}${e.name}/`);
      else if (prefix.startsWith("refs/")) {
        const seen = new Set();
        for (const line of readFileSync(p, "utf8").split("\n").filter(Boolean)) {
          const [oldId, newId] = line.split(" ");
          updates++;
          assert.ok(!seen.has(newId), `${repo}: ${prefix}${e.name} set to ${newId} twice:\n${readFileSync(p, "utf8")}`);
          seen.add(newId);
          if (/^0+$/.test(oldId) || /^0+$/.test(newId)) continue;
          const type = git(repo, "cat-file", "-t", newId);
          if (type !== "commit") continue; // a tag moved (fork syncs move unchanged tags), checked by hash
          execFileSync("git", ["-C", repo, "merge-base", "--is-ancestor", oldId, newId], { env: gitEnv });
        }
      }
    }
  };
  walk(logs, "");
  return updates;
}

function startNode(name) {
  const n = nodes[name];
  const child = spawn(
    RUNNER,
    ["run", "--edge-url", b.url, "--data-dir", path.join(dir, name), "--poll-ms", "200", "--lease-seconds", LEASE_SECONDS, "--concurrency", "2"],
    { env: { ...process.env, MIRRORFARM_NODE_TOKEN: n.token, MIRRORFARM_LOG: "info", NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  const i = n.logs.push("") - 1;
  child.stdout.on("data", (d) => (n.logs[i] += d));
  child.stderr.on("data", (d) => (n.logs[i] += d));
  n.child = child;
}

async function stopNode(name, signal = "SIGTERM") {
  const child = nodes[name].child;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill(signal);
  await exited;
}

const logOf = (name) => nodes[name].logs.join("\n");
const leasedIds = (text) => [...text.matchAll(/\bleased worker=\d+ job=(\d+)/g)].map((m) => m[1]);
const reportedIds = (text) => [...text.matchAll(/\breported job=(\d+)/g)].map((m) => m[1]);
/** Jobs a node's current process leased and has not reported. */
function inFlight(name) {
  const text = nodes[name].logs.at(-1);
  const done = new Set(reportedIds(text));
  return leasedIds(text).filter((id) => !done.has(id));
}

/** SIGKILLs a node that has a job in flight (the first of `order` that has), and returns it and
 * those jobs. */
async function killOneMidJob(what, order = ["n1", "n2", "n3"]) {
  const victim = order.find((n) => inFlight(n).length > 0);
  assert.ok(victim, `${what}: some node has a job in flight\n${allLogs().slice(-4000)}`);
  const jobs = inFlight(victim);
  await stopNode(victim, "SIGKILL");
  kills.push({ what, victim, jobs });
  console.log(`# ${what}: SIGKILLed ${victim} with job(s) ${jobs.join(", ")} in flight`);
  await sleep(300); // its sockets are closed before the held requests go on
  return { victim, jobs };
}

/** The target (repository) each job a node's log shows leased. */
const leasedTargets = (text) => new Map([...text.matchAll(/\bleased worker=\d+ job=(\d+) attempt=\d+ target=(\S+)/g)].map((m) => [m[1], m[2]]));

/** Each of `jobs` was finished by a node other than `victim`: the job itself, or (when the queue
 * closed the lapsed job because a twin for the same target was waiting) a later job for the same
 * target. */
function assertFinishedByOthers(victim, jobs) {
  const targets = leasedTargets(nodes[victim].logs.join("\n"));
  for (const id of jobs) {
    const target = targets.get(id);
    const by = Object.keys(nodes).filter((n) => {
      if (n === victim) return false;
      const theirs = leasedTargets(logOf(n));
      return reportedIds(logOf(n)).some((r) => r === id || (Number(r) > Number(id) && theirs.get(r) === target));
    });
    assert.ok(by.length > 0, `job ${id} (${target}) of ${victim} was finished by another node\n${allLogs().slice(-4000)}`);
  }
}

/** Waits until none of `repos` has a job queued or leased. */
function quiet(repos) {
  return until("no job queued or leased", async () => {
    const live = [];
    for (const r of repos) {
      const jobs = (await callB("GET", `${API}/repos/${r.id}/jobs?limit=100`)).body.values;
      live.push(...jobs.filter((j) => j.state === "QUEUED" || j.state === "LEASED").map((j) => `${r.name}:${j.id}:${j.state}`));
    }
    return { ok: live.length === 0, value: live };
  });
}

const allLogs = () => Object.entries(nodes).map(([n, x]) => `--- ${n}\n${x.logs.join("\n--- restart\n")}`).join("\n");

async function until(what, probe, ms = 60_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last.ok) return last.value;
    await sleep(200);
  }
  assert.fail(`${what}: ${JSON.stringify(last?.value)}\n${allLogs().slice(-6000)}`);
}

async function mirrorOf(repo) {
  return (await callB("GET", `/api/v4/projects/${repo.id}/remote_mirrors/${repo.mirrorId}`)).body;
}

function allMirrorsFinishedAfter(t, repos = local) {
  return until(`push mirrors finished after ${t}`, async () => {
    const ms = await Promise.all(repos.map(mirrorOf));
    const ok = ms.every((m) => m.update_status === "finished" && m.last_successful_update_at && Date.parse(m.last_successful_update_at) >= t);
    return { ok, value: ms.map((m) => [m.update_status, m.last_successful_update_at, m.last_error]) };
  });
}

before(async () => {
  execFileSync("cargo", ["build", "-q", "-p", "mirrorfarm-runner"], { cwd: ROOT, stdio: "inherit" });
  dir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-faults-e2e-"));
  mkdirSync(path.join(dir, "served"));
  mkdirSync(path.join(dir, "work"));
  gitServer = await startGitServer({ root: path.join(dir, "served"), username: USER, password: PASS });
  gateUp = await startGate(gitServer.port);
  [a, b] = await Promise.all([startWorker({ allowedHosts: "127.0.0.1", retryBaseMs: 200 }), startWorker({ allowedHosts: "127.0.0.1", retryBaseMs: 200 })]);
  callA = caller(a);
  callB = caller(b);

  // A: one project of FARM_REPOS repositories pulled from the git server; its node serves them,
  // and tells A its clone address is the gate in front of it.
  const servePort = await freePort();
  gateA = await startGate(servePort);
  const tokenA = (await callA("POST", `${API}/nodes`, { json: { name: "node-a" } })).body.token;
  nodeA = spawn(
    RUNNER,
    ["run", "--edge-url", a.url, "--data-dir", path.join(dir, "nodeA"), "--poll-ms", "200", "--concurrency", "2",
      "--serve", `127.0.0.1:${servePort}`, "--clone-url", `http://127.0.0.1:${gateA.port}`],
    { env: { ...process.env, MIRRORFARM_NODE_TOKEN: tokenA, MIRRORFARM_LOG: "info", NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  nodeA.stdout.on("data", (d) => (nodeALog += d));
  nodeA.stderr.on("data", (d) => (nodeALog += d));
  assert.equal((await callA("POST", "/rest/api/1.0/projects", { json: { key: "UP", name: "Upstream" } })).status, 201);
  for (let i = 0; i < FARM_REPOS; i++) {
    const name = `up${String(i).padStart(2, "0")}`;
    makeUpstream(name);
    const r = await callA("POST", "/rest/api/1.0/projects/UP/repos", { json: { name, upstreamUrl: gitServer.url(`${name}.git`) } });
    assert.equal(r.status, 201, r.text);
    await callA("POST", `${API}/repos/${r.body.id}/sync`);
  }
  await until("A serves its project", async () => {
    const list = await callA("GET", "/rest/api/1.0/projects/UP/repos?limit=100");
    const linked = (list.body?.values ?? []).filter((r) => r.links?.clone?.some((l) => l.name === "http"));
    return { ok: linked.length === FARM_REPOS, value: `${linked.length}\n${nodeALog.slice(-3000)}` };
  });

  // B: the farm's three nodes.
  for (const name of ["n1", "n2", "n3"]) {
    const { token, id } = (await callB("POST", `${API}/nodes`, { json: { name } })).body;
    nodes[name] = { token, id, logs: [] };
    startNode(name);
  }
  assert.equal((await callB("POST", "/rest/api/1.0/projects", { json: { key: "LOC", name: "Local" } })).status, 201);
});

after(async () => {
  for (const name of Object.keys(nodes)) await stopNode(name);
  if (nodeA && nodeA.exitCode === null) {
    const exited = new Promise((r) => nodeA.once("exit", r));
    nodeA.kill("SIGTERM");
    await exited;
  }
  await gateA?.close();
  await gateUp?.close();
  await gitServer?.close();
  mkdirSync(OUTPUT, { recursive: true });
  writeFileSync(path.join(OUTPUT, "farm-faults-e2e.log"), `${allLogs()}\n--- node A (upstream)\n${nodeALog}`);
  await a?.stop();
  await b?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("(a) a node SIGKILLed mid farm sync: the others finish the first sync of every repository", async () => {
  gateA.state.hold = true;
  const added = await callB("POST", `${API}/upstreamServers`, { json: { baseUrl: a.url, type: "bitbucket", token: a.adminToken } });
  assert.equal(added.status, 201, added.text);
  upstreamId = added.body.id;
  // Three nodes of two workers: six clones from A's node held at once means every node is mid-sync.
  await until("every worker of every node is cloning", async () => ({ ok: gateA.state.held.length >= 6, value: gateA.state.held.length }));
  const { victim, jobs } = await killOneMidJob("farm sync");
  const killedAt = Date.now();
  gateA.release();
  const { p: progress } = await until("every repository synced", async () => {
    const p = (await callB("GET", `${UP}/${upstreamId}/progress`)).body;
    const queued = (await callB("GET", "/rest/mirroring/1.0/supportInfo/refChangesQueue/count")).body;
    return { ok: !p.discovering && p.totalRepos === FARM_REPOS && p.syncedRepos === FARM_REPOS && queued === 0, value: { p, queued } };
  });
  console.log(`# farm sync: ${progress.syncedRepos}/${progress.totalRepos} synced ${Date.now() - killedAt} ms after the kill`);
  assertFinishedByOthers(victim, jobs);
  const records = (await callB("GET", "/rest/mirroring/1.0/supportInfo/repoSyncStatus?limit=100")).body.values;
  assert.equal(records.length, FARM_REPOS);
  for (const r of records) {
    const want = contentHash(served(r.repoSlug));
    assert.equal(r.hashes.content, want, `content hash of ${r.repoSlug}`);
    // A survivor's copy on disk says the same.
    const copies = ["n1", "n2", "n3"].filter((n) => n !== victim).map((n) => path.join(dir, n, "repos", `${r.localRepoId}.git`)).filter(existsSync);
    assert.ok(copies.length > 0, `a survivor holds ${r.repoSlug}`);
    assert.ok(copies.some((c) => contentHash(c) === want), `a survivor's copy of ${r.repoSlug} equals the upstream`);
  }
  startNode(victim); // back on its data directory
});

test("leases spread over the three nodes", async () => {
  gateUp.state.hold = true;
  for (let i = 0; i < LOCAL_REPOS; i++) {
    const name = `loc${i}`;
    makeUpstream(name);
    bareTarget(`target${i}`);
    const r = await callB("POST", "/rest/api/1.0/projects/LOC/repos", {
      json: { name, upstreamUrl: `http://${USER}:${PASS}@127.0.0.1:${gateUp.port}/${name}.git` },
    });
    assert.equal(r.status, 201, r.text);
    local.push({ name, id: r.body.id });
  }
  const before = Object.fromEntries(Object.keys(nodes).map((n) => [n, reportedIds(logOf(n)).length]));
  const t = Date.now();
  for (const r of local) assert.equal((await callB("POST", `${API}/repos/${r.id}/sync`)).status, 202);
  // Six pulls held at once on three nodes of two workers: each node holds two.
  await until("six pulls in flight", async () => ({ ok: gateUp.state.held.length >= 6, value: gateUp.state.held.length }));
  const holding = Object.keys(nodes).map((n) => [n, inFlight(n).length]);
  gateUp.release();
  await until("every pull finished", async () => {
    const pulls = await Promise.all(local.map(async (r) => (await callB("GET", `/api/v4/projects/${r.id}/mirror/pull`)).body));
    return { ok: pulls.every((p) => p.update_status === "finished" && Date.parse(p.last_successful_update_at) >= t), value: pulls.map((p) => p.update_status) };
  });
  // Then a push mirror each: its push goes to the node that holds the copy.
  for (const [i, r] of local.entries()) {
    const m = await callB("POST", `/api/v4/projects/${r.id}/remote_mirrors`, { json: { url: gitServer.url(`target${i}.git`), enabled: true } });
    assert.equal(m.status, 201, m.text);
    r.mirrorId = m.body.id;
  }
  await allMirrorsFinishedAfter(t);
  await quiet(local);
  const ran = Object.fromEntries(Object.keys(nodes).map((n) => [n, reportedIds(logOf(n)).length - before[n]]));
  console.log(`# jobs per node for ${LOCAL_REPOS} repositories (a pull, then a push each): ${JSON.stringify(ran)}; pulls in flight at once: ${JSON.stringify(holding)}`);
  for (const [n, count] of Object.entries(ran)) assert.ok(count > 0, `${n} ran jobs: ${JSON.stringify(ran)}`);
  for (let i = 0; i < LOCAL_REPOS; i++) assert.equal(contentHash(served(`target${i}`)), contentHash(served(`loc${i}`)));
});

test("(c) a node SIGKILLed mid push: its pushes go to the others at once, once each, fast-forward", async () => {
  for (const r of local) advance(r.name, `second of ${r.name}`);
  gitServer.state.holdPushes = true;
  const heldBefore = gitServer.state.held.length;
  const t = Date.now();
  for (const r of local) assert.equal((await callB("POST", `${API}/repos/${r.id}/sync`)).status, 202);
  // Each repository's push goes to the node holding its copy; wait until all six are held (or,
  // should one node hold more copies than it has workers, until the rest have been held a while).
  const waitStart = Date.now();
  await until("pushes held", async () => {
    const n = gitServer.state.held.length - heldBefore;
    return { ok: n >= LOCAL_REPOS || (n > 0 && Date.now() - waitStart > 8_000), value: n };
  }, 30_000);
  console.log(`# push mirrors: ${gitServer.state.held.length - heldBefore} pushes held at the kill`);
  const { victim, jobs } = await killOneMidJob("push mirror push", ["n2", "n3", "n1"]);
  const killedAt = Date.now();
  gitServer.releasePushes();
  await allMirrorsFinishedAfter(t);
  const took = Date.now() - killedAt;
  console.log(`# push mirrors: all ${LOCAL_REPOS} finished ${took} ms after the kill (lease ${LEASE_SECONDS} s; the live window is 120 s)`);
  assert.ok(took < 60_000, "the victim's copies did not hold its pushes for the live window");
  assertFinishedByOthers(victim, jobs);
  let updates = 0;
  for (let i = 0; i < LOCAL_REPOS; i++) {
    assert.equal(contentHash(served(`target${i}`)), contentHash(served(`loc${i}`)), `target${i} equals its upstream`);
    updates += assertUpdatesOnceAndFastForward(served(`target${i}`));
  }
  console.log(`# push mirrors: ${updates} ref updates in the targets' reflogs, each once and fast-forward`);
  startNode(victim);
});

test("(b) a node SIGKILLed mid fork sync: another node finishes it, once, fast-forward", async () => {
  makeUpstream("origin");
  bareTarget("fork");
  const origin = await callB("POST", "/rest/api/1.0/projects/LOC/repos", {
    json: { name: "origin", upstreamUrl: `http://${USER}:${PASS}@127.0.0.1:${gateUp.port}/origin.git` },
  });
  assert.equal(origin.status, 201, origin.text);
  const fork = await callB("POST", "/rest/api/1.0/projects/LOC/repos/origin", { json: { name: "origin-fork", project: { key: "LOC" }, url: gitServer.url("fork.git") } });
  assert.equal(fork.status, 201, fork.text);
  const SYNC = "/rest/sync/1.0/projects/LOC/repos/origin-fork";
  const enabled = await callB("POST", SYNC, { json: { enabled: true } });
  assert.equal(enabled.status, 200, enabled.text);
  const firstSync = enabled.body.lastSync;
  advance("origin", "second of origin");
  git(work("origin"), "branch", "feature");
  git(work("origin"), "push", "-q", "origin", "feature");
  gitServer.state.holdPushes = true;
  const heldBefore = gitServer.state.held.length;
  assert.equal((await callB("POST", `${API}/repos/${origin.body.id}/sync`)).status, 202);
  await until("the fork sync's push held", async () => ({ ok: gitServer.state.held.length > heldBefore, value: gitServer.state.held.length - heldBefore }), 30_000);
  const { victim, jobs } = await killOneMidJob("fork sync", ["n3", "n1", "n2"]);
  const killedAt = Date.now();
  gitServer.releasePushes();
  const status = await until("the fork synced again", async () => {
    const s = (await callB("GET", SYNC)).body;
    return { ok: s.lastSync > firstSync && s.aheadRefs.length + s.divergedRefs.length + s.orphanedRefs.length === 0, value: s };
  }, 40_000);
  console.log(`# fork sync: done ${Date.now() - killedAt} ms after the kill (lastError: ${status.lastError ?? "none"})`);
  assertFinishedByOthers(victim, jobs);
  assert.equal(contentHash(served("fork")), contentHash(served("origin")), "the fork holds the origin's refs");
  const updates = assertUpdatesOnceAndFastForward(served("fork"));
  console.log(`# fork sync: ${updates} ref updates in the fork's reflogs, each once and fast-forward`);
  startNode(victim);
});

test("a node restarted on its data directory resumes with its copies (no clone)", async () => {
  // The node killed mid push, since restarted: the repositories it held copies of.
  const { victim } = kills.find((k) => k.what === "push mirror push");
  const held = local.filter((r) => existsSync(path.join(dir, victim, "repos", `${r.id}.git`)));
  assert.ok(held.length > 0, `${victim} kept copies on disk`);
  // Only the restarted node may lease (the others are set OFFLINE, so they hold no affinity
  // either), so it takes their pulls; its copies must be fetched into, not cloned.
  const others = Object.keys(nodes).filter((n) => n !== victim);
  const setState = async (n, state) => {
    const r = await callB("PUT", `/rest/api/1.0/admin/git/mesh/nodes/${nodes[n].id}`, { json: { state } });
    assert.equal(r.status, 200, r.text);
  };
  await quiet(local);
  for (const n of others) await setState(n, "OFFLINE");
  const inodes = held.map((r) => statSync(path.join(dir, victim, "repos", `${r.id}.git`)).ino);
  for (const r of held) advance(r.name, `third of ${r.name}`);
  const logStart = nodes[victim].logs.at(-1).length;
  const t = Date.now();
  for (const r of held) assert.equal((await callB("POST", `${API}/repos/${r.id}/sync`)).status, 202);
  await allMirrorsFinishedAfter(t, held);
  const since = nodes[victim].logs.at(-1).slice(logStart);
  assert.ok(leasedIds(since).length >= held.length, `${victim} did the work:\n${since}`);
  assert.doesNotMatch(since, /\bcloned\b|cloning afresh/, "no copy was cloned again");
  assert.deepEqual(held.map((r) => statSync(path.join(dir, victim, "repos", `${r.id}.git`)).ino), inodes, "the same copies");
  for (const r of held) assert.equal(contentHash(served(`target${local.indexOf(r)}`)), contentHash(served(r.name)));
  console.log(`# resume: ${victim} restarted on its data directory fetched into its ${held.length} copies, no clone`);
  for (const n of others) await setState(n, "AVAILABLE");
});

test("figures: kills survived, jobs per node; no secret in any log", async () => {
  const ran = Object.fromEntries(Object.keys(nodes).map((n) => [n, reportedIds(logOf(n)).length]));
  console.log(`# kills survived: ${kills.length} (${kills.map((k) => `${k.what}: ${k.victim}`).join("; ")})`);
  console.log(`# jobs reported per node over the whole file: ${JSON.stringify(ran)}`);
  assert.equal(kills.length, 3);
  for (const [n, count] of Object.entries(ran)) assert.ok(count > 0, `${n} ran jobs`);
  const logs = `${allLogs()}\n${nodeALog}`;
  for (const secret of [PASS, a.adminToken, b.adminToken, ...Object.values(nodes).map((n) => n.token)]) {
    assert.ok(!logs.includes(secret), "a secret is in a node's log");
  }
  // Responses: the git password and A's token (B's upstream credential) are never echoed.
  for (const secret of [PASS, a.adminToken]) assert.ok(!responses.join("\n").includes(secret), "a secret is in a response");
});
