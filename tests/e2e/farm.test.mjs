// The mirror farm end to end (seed 000): two Worker instances under workerd, each with its farm
// node. A is the upstream: its repositories pull from real repositories served over
// authenticated smart HTTP, and its node serves their copies. B is the farm: it adds A as a
// `bitbucket` upstream, its node lists A's projects over A's Bitbucket REST (in pages of 2),
// clones from A's node with A's token, and serves its own copies to B's users.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startWorker, client, ROOT, OUTPUT } from "../support/worker.mjs";
import { startGitServer } from "../support/git_http.mjs";
import { contentHash, git, gitEnv } from "../support/git.mjs";

const run = promisify(execFile);
const RUNNER = path.join(ROOT, "target/debug/mirrorfarm-runner");
const USER = "farm-bot";
const PASS = "farm-http-pa55";
const UP = "/rest/mirroring/1.0/upstreamServers";

let dir, gitServer, a, b, nodeA, nodeB, upstreamId;
const logs = { nodeA: "", nodeB: "" };
const responses = [];
const served = (name) => path.join(dir, "served", `${name}.git`);
const work = (name) => path.join(dir, "work", name);

function client_(worker) {
  const call = client(worker.url);
  return async (method, url, opts = {}) => {
    const r = await call(method, url, { token: worker.adminToken, ...opts });
    responses.push(`${method} ${url} → ${r.status} ${r.text}`);
    return r;
  };
}
let callA, callB;

/** A served repository with a commit on main, a second branch and an annotated tag; `alpha` also
 * has 40 more branches, so a clone's wants pass 1 KB and git sends them gzip-encoded. */
function makeRepo(name) {
  execFileSync("git", ["init", "-q", "--bare", "-b", "main", served(name)], { env: gitEnv });
  execFileSync("git", ["clone", "-q", served(name), work(name)], { env: gitEnv });
  commit(name, `first of ${name}`);
  git(work(name), "branch", "dev");
  git(work(name), "tag", "-a", "v1", "-m", "release 1");
  const more = name === "alpha" ? Array.from({ length: 40 }, (_, i) => `topic-${i}`) : [];
  for (const b of more) {
    git(work(name), "checkout", "-q", "-b", b, "main");
    git(work(name), "commit", "-q", "--allow-empty", "-m", b);
  }
  git(work(name), "checkout", "-q", "main");
  git(work(name), "push", "-q", "origin", "main", "dev", "v1", ...more);
}

function commit(name, text) {
  writeFileSync(path.join(work(name), "file.txt"), `${text}\n`);
  git(work(name), "add", "file.txt");
  git(work(name), "commit", "-q", "-m", text);
  git(work(name), "push", "-q", "origin", "HEAD:main");
}


function startNode(worker, token, name, extraEnv = {}) {
  const child = spawn(
    RUNNER,
    ["run", "--edge-url", worker.url, "--data-dir", path.join(dir, name), "--poll-ms", "200", "--lease-seconds", "10", "--concurrency", "2", "--serve", "127.0.0.1:0"],
    { env: { ...process.env, MIRRORFARM_NODE_TOKEN: token, MIRRORFARM_LOG: "info,mirrorfarm_runner::serve=debug", NO_COLOR: "1", ...extraEnv }, stdio: ["ignore", "pipe", "pipe"] },
  );
  child.stdout.on("data", (d) => (logs[name] += d));
  child.stderr.on("data", (d) => (logs[name] += d));
  return child;
}

async function stopNode(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await exited;
}

async function until(what, probe, ms = 60_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last.ok) return last.value;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`${what}: ${JSON.stringify(last?.value)}\nnode A:\n${logs.nodeA.slice(-2000)}\nnode B:\n${logs.nodeB.slice(-3000)}`);
}

/** Creates a project in A with mirrored repositories and waits until A's node serves them. */
async function projectInA(key, name, repos) {
  const p = await callA("POST", "/rest/api/1.0/projects", { json: { key, name } });
  assert.equal(p.status, 201, p.text);
  for (const repo of repos) {
    makeRepo(repo);
    const r = await callA("POST", `/rest/api/1.0/projects/${key}/repos`, { json: { name: repo, upstreamUrl: gitServer.url(`${repo}.git`) } });
    assert.equal(r.status, 201, r.text);
    await callA("POST", `/rest/mirrorfarm/1.0/repos/${r.body.id}/sync`);
  }
  await servedByA(key, repos.length);
  return p.body.id;
}

/** Waits until every repository of A's project has an http clone link (its node holds a current copy). */
function servedByA(key, count) {
  return until(`A serves ${key}`, async () => {
    const list = await callA("GET", `/rest/api/1.0/projects/${key}/repos`);
    const linked = (list.body?.values ?? []).filter((r) => r.links?.clone?.some((l) => l.name === "http"));
    return { ok: linked.length === count, value: list.body };
  });
}

async function syncStatus() {
  const r = await callB("GET", "/rest/mirroring/1.0/supportInfo/repoSyncStatus?limit=100");
  assert.equal(r.status, 200, r.text);
  return r.body.values;
}

function progressIs(want) {
  return until(`progress ${JSON.stringify(want)}`, async () => {
    const p = (await callB("GET", `${UP}/${upstreamId}/progress`)).body;
    return { ok: !p.discovering && p.syncedRepos === want && p.totalRepos === want, value: p };
  });
}

let projectIds = {};
let nodeTokenB;
let idsInA = {};

before(async () => {
  execFileSync("cargo", ["build", "-q", "-p", "mirrorfarm-runner"], { cwd: ROOT, stdio: "inherit" });
  dir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-farm-e2e-"));
  mkdirSync(path.join(dir, "served"));
  mkdirSync(path.join(dir, "work"));
  gitServer = await startGitServer({ root: path.join(dir, "served"), username: USER, password: PASS });
  a = await startWorker({ allowedHosts: "127.0.0.1", retryBaseMs: 200 });
  // B polls every second its cron runs (the tests run it with `/__scheduled`).
  b = await startWorker({ allowedHosts: "127.0.0.1", retryBaseMs: 200, pollIntervalMs: 1000 });
  callA = client_(a);
  callB = client_(b);
  const tokenA = (await callA("POST", "/rest/mirrorfarm/1.0/nodes", { json: { name: "node-a" } })).body.token;
  const tokenB = (await callB("POST", "/rest/mirrorfarm/1.0/nodes", { json: { name: "node-b" } })).body.token;
  nodeTokenB = tokenB;
  nodeA = startNode(a, tokenA, "nodeA");
  nodeB = startNode(b, tokenB, "nodeB", { MIRRORFARM_DISCOVERY_PAGE: "2" });
  projectIds.one = await projectInA("ONE", "Project one", ["alpha", "beta", "gamma"]);
  projectIds.two = await projectInA("TWO", "Project two", ["delta"]);
  for (const key of ["ONE", "TWO"]) {
    for (const r of (await callA("GET", `/rest/api/1.0/projects/${key}/repos`)).body.values) idsInA[r.slug] = String(r.id);
  }
});

after(async () => {
  await stopNode(nodeA);
  await stopNode(nodeB);
  await gitServer?.close();
  mkdirSync(OUTPUT, { recursive: true });
  writeFileSync(path.join(OUTPUT, "farm-e2e.log"), `node A:\n${logs.nodeA}\nnode B:\n${logs.nodeB}`);
  await a?.stop();
  await b?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("an upstream server is added, and a bad one refused in Bitbucket's shape", async () => {
  const bad = await callB("POST", "/rest/mirrorfarm/1.0/upstreamServers", { json: { baseUrl: a.url, type: "svn" } });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.errors[0].context, "type");
  const added = await callB("POST", "/rest/mirrorfarm/1.0/upstreamServers", { json: { baseUrl: a.url, type: "bitbucket", token: a.adminToken } });
  assert.equal(added.status, 201, added.text);
  assert.equal(added.body.state, "INITIALIZING");
  upstreamId = added.body.id;
  // Selected projects only, before the first listing is recorded.
  const mode = await callB("PUT", `${UP}/${upstreamId}/settings/mode`, { body: '"SELECTED_PROJECTS"', headers: { "Content-Type": "application/json" } });
  assert.deepEqual([mode.status, mode.body], [200, "SELECTED_PROJECTS"]);
  const selected = await callB("POST", `${UP}/${upstreamId}/settings/projects`, { json: [String(projectIds.one)] });
  assert.deepEqual(selected.body, [String(projectIds.one)]);
  const settings = await callB("GET", `${UP}/${upstreamId}/settings`);
  assert.deepEqual(settings.body, { projectIds: [String(projectIds.one)], mode: "SELECTED_PROJECTS" });
  const listed = await callB("GET", UP);
  assert.equal(listed.body.values[0].id, upstreamId);
  assert.equal(listed.body.isLastPage, true);
});

test("SELECTED_PROJECTS: only the selected project's repositories, all pages, sync; their hashes equal the upstream's", async () => {
  await progressIs(3);
  const server = await callB("GET", `${UP}/${upstreamId}`);
  assert.equal(server.body.state, "INSTALLED");
  const records = await syncStatus();
  assert.deepEqual(records.map((r) => r.repoSlug).sort(), ["alpha", "beta", "gamma"], "three repositories over two pages of two");
  const published = (await callA("GET", "/rest/mirroring/1.0/repos?limit=100")).body.values;
  for (const r of records) {
    assert.equal(r.upstreamId, upstreamId);
    assert.equal(r.externalRepoId, idsInA[r.repoSlug]);
    assert.equal(r.failedSyncCount, 0);
    assert.equal(typeof r.initialSyncDate, "number");
    assert.equal(r.hashes.content, await contentHash(served(r.repoSlug)), `content hash of ${r.repoSlug}`);
    const inA = published.find((p) => String(p.id) === r.externalRepoId);
    assert.equal(inA.properties.contentHash, r.hashes.content, "A publishes the hash B holds");
    assert.equal(inA.properties.metadataHash, r.hashes.metadata, "and the same metadata hash");
  }
  const queue = await callB("GET", "/rest/mirroring/1.0/supportInfo/refChangesQueue/count");
  assert.equal(queue.body, 0);
  // The status read (the widget's) and the metrics show the farm.
  const status = await callB("GET", `/rest/mirrorfarm/1.0/repos/${records[0].localRepoId}/status`);
  assert.equal(status.body.farm.upstream, a.url);
  assert.equal(status.body.farm.status, "AVAILABLE");
  assert.equal(status.body.farm.contentHash, status.body.farm.upstreamContentHash, "the copy equals the upstream as last listed");
  const metrics = await callB("GET", "/rest/mirrorfarm/1.0/metrics");
  assert.match(metrics.headers.get("content-type"), /^text\/plain; version=0\.0\.4/);
  assert.match(metrics.text, /^mirrorfarm_farm_repositories\{status="AVAILABLE"\} 3$/m);
  assert.match(metrics.text, new RegExp(`^mirrorfarm_upstream_last_sync_age_seconds\\{upstream="${upstreamId}",base_url="[^"]+"\\} [0-9.]+$`, "m"));
  const nodes = await callB("GET", `${UP}/${upstreamId}/farmNodes`);
  assert.equal(nodes.body[0].name, "node-b");
  assert.equal(nodes.body[0].address.address, "127.0.0.1", "where it serves clones");
  assert.ok(nodes.body[0].address.port > 0);
  assert.equal(nodes.body[0].address.hostName, "127.0.0.1");
});

test("a farm node serves clones with identical refs, and refuses callers without a valid token", async () => {
  const mirrored = await callB("GET", `${UP}/${upstreamId}/repos/${idsInA.alpha}`);
  assert.equal(mirrored.status, 200, mirrored.text);
  assert.equal(mirrored.body.status, "AVAILABLE");
  assert.equal(mirrored.body.available, true);
  const href = mirrored.body.links.clone.find((l) => l.name === "http").href;
  assert.deepEqual(mirrored.body.cloneUrls, mirrored.body.links.clone);
  assert.match(mirrored.body.pushUrls[0].href, /\/scm\/one\/alpha\.git$/, "pushes go upstream");
  const withToken = href.replace("http://", `http://x-token-auth:${b.adminToken}@`);
  const clone = path.join(dir, "clone-alpha");
  await run("git", ["clone", "-q", "--mirror", withToken, clone], { env: gitEnv });
  assert.equal(await contentHash(clone), await contentHash(served("alpha")), "a clone from the node has the upstream's refs");
  assert.match(logs.nodeB, /gzip-encoded request: through http-backend/, "43 wants: git sent them gzip-encoded");
  // Every protocol version lists the same refs.
  const listings = [];
  for (const v of ["0", "1", "2"]) listings.push((await run("git", ["-c", `protocol.version=${v}`, "ls-remote", "--heads", "--tags", withToken], { env: gitEnv })).stdout);
  assert.equal(listings[0], listings[2]);
  assert.equal(listings[1], listings[2]);
  assert.match(listings[2], /refs\/heads\/main/);
  const anonymous = await fetch(`${href}/info/refs?service=git-upload-pack`);
  assert.equal(anonymous.status, 401);
  assert.match(anonymous.headers.get("www-authenticate") ?? "", /Basic/);
  const wrong = await fetch(`${href}/info/refs?service=git-upload-pack`, { headers: { Authorization: `Basic ${Buffer.from("x-token-auth:mfp_wrong_token_000000000").toString("base64")}` } });
  assert.equal(wrong.status, 401);
  const push = await fetch(`${href}/info/refs?service=git-receive-pack`, { headers: { Authorization: `Basic ${Buffer.from(`x:${b.adminToken}`).toString("base64")}` } });
  assert.equal(push.status, 403, "read-only");
});

test("the node endpoints refuse bad input in Bitbucket's shape, and users may not call them", async () => {
  const asNode = (method, url, json) => client(b.url)(method, url, { headers: { Authorization: `Bearer ${nodeTokenB}` }, json });
  const badUrl = await asNode("POST", "/rest/mirrorfarm/1.0/nodes/heartbeat", { cloneUrl: "ftp://x-token-auth:s3cret@127.0.0.1/" });
  assert.equal(badUrl.status, 400, badUrl.text);
  assert.equal(badUrl.body.errors[0].context, "cloneUrl");
  assert.ok(!badUrl.text.includes("s3cret"));
  const notList = await asNode("POST", "/rest/mirrorfarm/1.0/nodes/copies", { repositoryIds: "all" });
  assert.equal(notList.status, 400, notList.text);
  const tooMany = await asNode("POST", "/rest/mirrorfarm/1.0/nodes/copies", { repositoryIds: Array.from({ length: 5_001 }, (_, i) => i + 1) });
  assert.deepEqual([tooMany.status, tooMany.body.errors[0].context], [400, "repositoryIds"]);
  const gone = await asNode("POST", "/rest/mirrorfarm/1.0/nodes/copies", { repositoryIds: [999999] });
  assert.deepEqual(gone.body, { removedRepositories: [999999] });
  const missing = await asNode("POST", "/rest/mirrorfarm/1.0/nodes/clone-access", { projectKey: "NOPE", slug: "nope", authorization: `Bearer ${b.adminToken}` });
  assert.equal(missing.status, 404);
  const noSlug = await asNode("POST", "/rest/mirrorfarm/1.0/nodes/clone-access", { projectKey: "ONE" });
  assert.equal(noSlug.status, 400, noSlug.text);
  const asUser = await callB("POST", "/rest/mirrorfarm/1.0/nodes/clone-access", { json: { projectKey: "ONE", slug: "alpha" } });
  assert.equal(asUser.status, 401, "nodes only");
  const badMode = await callB("PUT", `${UP}/${upstreamId}/settings`, { json: { mode: "SOME_PROJECTS" } });
  assert.deepEqual([badMode.status, badMode.body.errors[0].context], [400, "mode"]);
  const badProjects = await callB("POST", `${UP}/${upstreamId}/settings/projects`, { json: { not: "an array" } });
  assert.deepEqual([badProjects.status, badProjects.body.errors[0].context], [400, "projectIds"]);
  assert.equal((await callB("GET", `${UP}/00000000-0000-0000-0000-000000000000/progress`)).status, 404);
});

test("a new upstream commit gives a new content hash after a repair, and ?recreate=true clones afresh", async () => {
  const before = (await syncStatus()).find((r) => r.repoSlug === "alpha").hashes.content;
  commit("alpha", "second");
  await callA("POST", `/rest/mirrorfarm/1.0/repos/${idsInA.alpha}/sync`);
  const want = await contentHash(served("alpha"));
  assert.notEqual(want, before);
  await until("A publishes the new hash", async () => {
    const inA = (await callA("GET", "/rest/mirroring/1.0/repos?limit=100")).body.values.find((p) => String(p.id) === idsInA.alpha);
    return { ok: inA.properties.contentHash === want, value: inA.properties };
  });
  const repair = await callB("POST", `${UP}/${upstreamId}/repos/${idsInA.alpha}/synchronization`);
  assert.equal(repair.status, 202, repair.text);
  await until("B's copy follows", async () => {
    const r = (await syncStatus()).find((x) => x.repoSlug === "alpha");
    return { ok: r.hashes.content === want, value: r };
  });
  const recreate = await callB("POST", `${UP}/${upstreamId}/repos/${idsInA.alpha}/synchronization?recreate=true`);
  assert.equal(recreate.status, 202);
  await until("the copy is cloned afresh", async () => ({ ok: /copy dropped; cloning afresh/.test(logs.nodeB), value: "no log line" }));
  await until("and synced again", async () => {
    const q = (await callB("GET", "/rest/mirroring/1.0/supportInfo/refChangesQueue/count")).body;
    const r = (await syncStatus()).find((x) => x.repoSlug === "alpha");
    return { ok: q === 0 && r.hashes.content === want, value: { q, r } };
  });
  const unknown = await callB("POST", `${UP}/${upstreamId}/repos/999999/synchronization`);
  assert.equal(unknown.status, 404);
});

test("B polls A by its published content hashes: one listing, and only the repository that moved is pulled", async () => {
  const farmIds = Object.fromEntries((await syncStatus()).map((r) => [r.repoSlug, r.localRepoId]));
  /** How many polls each of B's farm repositories has had. */
  const polls = async () => {
    const out = {};
    for (const [slug, id] of Object.entries(farmIds)) {
      const jobs = (await callB("GET", `/rest/mirrorfarm/1.0/repos/${id}/jobs?limit=100`)).body.values;
      out[slug] = jobs.filter((j) => j.kind === "PULL_MIRROR" && j.reason === "POLL").length;
    }
    return out;
  };
  /** Runs B's cron and waits until its hash poll is listed and every pull it asked for is done. */
  const cronB = async () => {
    const started = Date.now();
    await new Promise((r) => setTimeout(r, 1100)); // past the 1 s poll interval
    const ran = await fetch(`${b.url}/__scheduled?cron=*+*+*+*+*`);
    assert.equal(ran.status, 200);
    return until("B's hash poll and its pulls", async () => {
      const server = (await callB("GET", `${UP}/${upstreamId}`)).body;
      const queue = (await callB("GET", "/rest/mirroring/1.0/supportInfo/refChangesQueue/count")).body;
      return { ok: (server.hashesListedAt ?? 0) >= started && queue === 0, value: { server, queue } };
    });
  };
  const first = await cronB();
  assert.equal(first.server.publishesContentHashes, true, JSON.stringify(first.server));
  const settled = await polls();
  // Nothing moved since: a second listing pulls nothing.
  await cronB();
  assert.deepEqual(await polls(), settled, "an unchanged listing pulls nothing");
  // beta moves upstream; once A publishes its new hash, B's next listing pulls beta alone.
  commit("beta", "moved upstream");
  await callA("POST", `/rest/mirrorfarm/1.0/repos/${idsInA.beta}/sync`);
  const want = await contentHash(served("beta"));
  await until("A publishes beta's new hash", async () => {
    const inA = (await callA("GET", "/rest/mirroring/1.0/repos?limit=100")).body.values.find((p) => String(p.id) === idsInA.beta);
    return { ok: inA.properties.contentHash === want, value: inA.properties };
  });
  await cronB();
  const after = await polls();
  assert.deepEqual(after, { ...settled, beta: settled.beta + 1 }, "only beta is pulled");
  await until("B's copy of beta follows", async () => {
    const r = (await syncStatus()).find((x) => x.repoSlug === "beta");
    return { ok: r.hashes.content === want, value: r };
  });
  assert.match(logs.nodeB, /listed the upstream's content hashes/);
});

test("adding a project brings its repositories; removing one removes its repositories and the node's copies", async () => {
  const oneIds = (await syncStatus()).map((r) => r.localRepoId);
  const added = await callB("POST", `${UP}/${upstreamId}/settings/projects/${projectIds.two}`);
  assert.equal(added.status, 200, added.text);
  await progressIs(4);
  const removed = await callB("DELETE", `${UP}/${upstreamId}/settings/projects`, { json: [String(projectIds.one)] });
  assert.equal(removed.status, 204);
  await progressIs(1);
  assert.deepEqual((await syncStatus()).map((r) => r.repoSlug), ["delta"]);
  for (const id of oneIds) {
    await until(`copy ${id} deleted`, async () => ({ ok: !existsSync(path.join(dir, "nodeB", "repos", `${id}.git`)), value: id }));
  }
  const gone = await callB("GET", `${UP}/${upstreamId}/repos/${idsInA.alpha}`);
  assert.equal(gone.body.status, "NOT_MIRRORED");
});

test("ALL_PROJECTS picks up a project created upstream later", async () => {
  await projectInA("THREE", "Project three", ["epsilon"]);
  const mode = await callB("PUT", `${UP}/${upstreamId}/settings`, { json: { mode: "ALL_PROJECTS" } });
  assert.equal(mode.body.mode, "ALL_PROJECTS");
  await progressIs(5);
  assert.ok((await syncStatus()).some((r) => r.repoSlug === "epsilon"));
});

test("deleting the upstream server removes its repositories; a node deletes their copies when it next checks", async () => {
  const ids = (await syncStatus()).map((r) => r.localRepoId);
  assert.ok(ids.length > 0);
  await stopNode(nodeB);
  const deleted = await callB("DELETE", `/rest/mirrorfarm/1.0/upstreamServers/${upstreamId}`);
  assert.equal(deleted.status, 204);
  assert.equal((await callB("GET", `${UP}/${upstreamId}`)).status, 404);
  assert.deepEqual(await syncStatus(), []);
  for (const id of ids) assert.ok(existsSync(path.join(dir, "nodeB", "repos", `${id}.git`)), "still on disk while the node is down");
  const tokenB = (await callB("POST", "/rest/mirrorfarm/1.0/nodes", { json: { name: "node-b2" } })).body.token;
  nodeB = startNode(b, tokenB, "nodeB");
  for (const id of ids) {
    await until(`copy ${id} deleted at start`, async () => ({ ok: !existsSync(path.join(dir, "nodeB", "repos", `${id}.git`)), value: id }));
  }
});

test("the upstream's token is in no response and no log line", async () => {
  const places = { responses: responses.join("\n"), "node A's log": logs.nodeA, "node B's log": logs.nodeB, "A's log": a.logs(), "B's log": b.logs() };
  for (const [where, text] of Object.entries(places)) assert.ok(!text.includes(a.adminToken), `the token is in ${where}`);
});
