// Mesh end to end (seed 002): three real farm nodes registered through the Mesh API against a
// Worker under workerd. Twelve repositories are pulled by node 1; a Mesh migration moves ten of
// them onto node 2 (node 2 fetches each copy from node 1's clone server with a grant the edge
// signed, the hashes are compared, and only then do clones switch); two go to node 3, which is
// then drained and leases nothing more; a target killed mid-migration leaves the source serving.
// Connectivity, the control plane's key and support zips are read as an administrator would.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createPublicKey } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startWorker, client } from "../support/worker.mjs";
import { startGitServer } from "../support/git_http.mjs";
import { buildNode, startNode } from "../support/node.mjs";
import { contentHash, git, gitEnv } from "../support/git.mjs";

const MESH = "/rest/api/1.0/admin/git/mesh";
const MIGRATION = "/rest/api/1.0/migration/mesh";
const GIT_USER = "mesh-bot";
const GIT_PASS = "m3sh-g1t-pa55";
const REPOS = Array.from({ length: 12 }, (_, i) => `repo-${String(i + 1).padStart(2, "0")}`);

let worker, call, admin, dir, gitServer;
const nodes = {}; // name → { id, token, process, port }
const ids = {}; // slug → repository id

const as = (method, url, opts = {}) => call(method, url, { token: admin, ...opts });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(pred, what, ms = 60_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await pred();
    if (last) return last;
    await sleep(200);
  }
  const logs = Object.entries(nodes).map(([n, x]) => `--- ${n}\n${x.process?.log().slice(-3000)}`).join("\n");
  assert.fail(`${typeof what === "function" ? what() : what}: timed out\n${logs}`);
}


async function registerNode(name) {
  const r = await as("POST", `${MESH}/nodes`, { json: { name } });
  assert.equal(r.status, 200, r.text);
  assert.match(r.body.token, /^mfn_/);
  assert.equal(r.body.state, "AVAILABLE");
  nodes[name] = { id: Number(r.body.id), token: r.body.token };
}

function launch(name) {
  const node = nodes[name];
  node.process = startNode({
    edgeUrl: worker.url,
    token: node.token,
    dataDir: path.join(dir, name),
    name: `mesh-${name}`,
    args: ["--serve", "127.0.0.1:0", "--heartbeat-secs", "1", "--lease-seconds", "10", "--concurrency", "2"],
  });
}

/** The node whose clone server serves `slug` now, by its clone link. */
async function servingNode(slug) {
  const repo = await as("GET", `/rest/api/1.0/projects/MESH/repos/${slug}`);
  const href = repo.body?.links?.clone?.find((l) => l.name === "http")?.href;
  if (!href) return null;
  const port = Number(new URL(href).port);
  const node = Object.entries(nodes).find(([, n]) => n.port === port);
  return node ? { name: node[0], href } : { name: "?", href };
}

/** Learns each running node's clone-server port from the Mesh API. */
async function learnPorts() {
  await waitFor(async () => {
    const list = (await as("GET", `${MESH}/nodes`)).body;
    for (const n of list) {
      const mine = Object.values(nodes).find((x) => x.id === Number(n.id));
      if (mine && n.rpcUrl) mine.port = Number(new URL(n.rpcUrl).port);
    }
    return Object.values(nodes).every((n) => !n.process || n.port);
  }, "every running node reports its clone server");
}

function cloneAndHash(href, into) {
  const withToken = href.replace("http://", `http://x-token-auth:${admin}@`);
  execFileSync("git", ["clone", "-q", "--mirror", withToken, into], { env: gitEnv });
  return contentHash(into);
}

async function migrate(json) {
  const r = await as("POST", MIGRATION, { json });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.type, "com.atlassian.bitbucket.migration.mesh");
  return r.body.id;
}

async function ended(jobId) {
  let last;
  return waitFor(async () => {
    last = (await as("GET", `${MIGRATION}/${jobId}/summary`)).body;
    return last.endTime ? last : null;
  }, () => `Mesh migration ${jobId} ends (last: ${JSON.stringify(last)})`);
}

before(async () => {
  buildNode();
  dir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-mesh-e2e-"));
  mkdirSync(path.join(dir, "served"));
  for (const [i, slug] of REPOS.entries()) {
    const work = path.join(dir, "work", slug);
    mkdirSync(work, { recursive: true });
    git(work, "init", "-q", "-b", "main");
    writeFileSync(path.join(work, "f.txt"), `content of ${slug}\n`);
    git(work, "add", ".");
    git(work, "commit", "-q", "-m", `first of ${slug}`);
    if (i % 2 === 0) git(work, "tag", "-a", "v1", "-m", "release");
    git(work, "branch", `topic-${i}`);
    execFileSync("git", ["clone", "-q", "--bare", work, path.join(dir, "served", `${slug}.git`)], { env: gitEnv });
  }
  gitServer = await startGitServer({ root: path.join(dir, "served"), username: GIT_USER, password: GIT_PASS });
  worker = await startWorker({ allowedHosts: "127.0.0.1", retryBaseMs: 200, pollIntervalMs: 0 });
  call = client(worker.url);
  admin = worker.adminToken;
  assert.equal((await as("POST", "/rest/api/1.0/projects", { json: { key: "MESH", name: "Mesh" } })).status, 201);
  for (const slug of REPOS) {
    const upstreamUrl = gitServer.url(`${slug}.git`);
    const r = await as("POST", "/rest/api/1.0/projects/MESH/repos", { json: { name: slug, upstreamUrl } });
    assert.equal(r.status, 201, r.text);
    ids[slug] = r.body.id;
  }
  for (const name of ["node-1", "node-2", "node-3"]) await registerNode(name);
});

after(async () => {
  for (const n of Object.values(nodes)) await n.process?.stop();
  await gitServer?.close();
  await worker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("node 1 alone pulls every repository and serves it", async () => {
  launch("node-1");
  await learnPorts();
  for (const slug of REPOS) {
    const r = await as("POST", `/rest/mirrorfarm/1.0/repos/${ids[slug]}/sync`);
    assert.ok([200, 202, 204].includes(r.status), r.text);
  }
  for (const slug of REPOS) {
    const on = await waitFor(async () => (await servingNode(slug))?.name === "node-1", `${slug} served by node 1`);
    assert.ok(on);
  }
});

test("Mesh nodes: listed, renamed, states checked, the control plane's key published", async () => {
  launch("node-2");
  launch("node-3");
  await learnPorts();
  const list = await as("GET", `${MESH}/nodes`);
  assert.equal(list.status, 200);
  assert.deepEqual(list.body.map((n) => n.name).sort(), ["node-1", "node-2", "node-3"]);
  for (const n of list.body) {
    assert.equal(n.rpcId, n.id);
    assert.equal(typeof n.lastSeenDate, "number");
  }
  const one = await as("GET", `${MESH}/nodes/${nodes["node-3"].id}`);
  assert.equal(one.body.offline, false);
  const renamed = await as("PUT", `${MESH}/nodes/${nodes["node-3"].id}`, { json: { name: "node-three" } });
  assert.equal(renamed.status, 200, renamed.text);
  assert.equal(renamed.body.name, "node-three");
  assert.equal((await as("PUT", `${MESH}/nodes/${nodes["node-3"].id}`, { json: { name: "node-3" } })).body.name, "node-3");
  const clash = await as("PUT", `${MESH}/nodes/${nodes["node-3"].id}`, { json: { name: "node-1" } });
  assert.equal(clash.status, 409, clash.text);
  const bad = await as("PUT", `${MESH}/nodes/${nodes["node-3"].id}`, { json: { state: "SLEEPING" } });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.errors[0].context, "state");
  assert.equal((await as("GET", `${MESH}/nodes/999999`)).status, 404);

  const pem = await as("GET", `${MESH}/config/control-plane.pem`);
  assert.equal(pem.status, 200);
  assert.match(pem.headers.get("content-type"), /^text\/plain/);
  assert.equal(createPublicKey(pem.text).asymmetricKeyType, "ed25519", "a real Ed25519 public key");
});

test("connectivity: each node's measured round trips to the edge and to the other nodes", async () => {
  const report = await waitFor(async () => {
    const r = (await as("GET", `${MESH}/diagnostics/connectivity`)).body;
    const rows = r.reports.filter((x) => x.node.type === "MESH");
    const measured = rows.length === 3 && rows.every((x) => x.summaries.length === 3 && x.summaries.every((s) => s.summary.reachable));
    return measured ? r : null;
  }, "every link measured reachable");
  assert.equal(report.reports[0].node.type, "BITBUCKET");
  assert.ok(report.reports[0].summaries.every((s) => s.summary.reachable && s.summary.roundTripTime >= 0));
  const n1 = report.reports.find((x) => x.node.id === String(nodes["node-1"].id));
  const toTwo = n1.summaries.find((s) => s.node.id === String(nodes["node-2"].id));
  assert.equal(toTwo.node.type, "MESH");
  assert.ok(toTwo.summary.roundTripTime >= 0, JSON.stringify(toTwo));
});

test("a clone server refuses a fetch grant the control plane did not sign", async () => {
  const port = nodes["node-1"].port;
  const payload = Buffer.from(`${ids[REPOS[0]]}.${nodes["node-1"].id}.${nodes["node-2"].id}.${Date.now() + 60_000}`).toString("hex");
  const forged = `mfg1.${payload}.${"ab".repeat(64)}`;
  const r = await fetch(`http://127.0.0.1:${port}/scm/mesh/${REPOS[0]}.git/info/refs?service=git-upload-pack`, {
    headers: { Authorization: `Bearer ${forged}` },
  });
  assert.equal(r.status, 403);
  assert.match(await r.text(), /signature/);
});

test("two repositories move to node 3; a preview names what a request selects", async () => {
  const preview = await as("POST", `${MIGRATION}/preview`, { json: { repositoryIds: [ids["repo-11"], ids["repo-12"]], nodeIds: [nodes["node-3"].id] } });
  assert.equal(preview.status, 200, preview.text);
  assert.deepEqual(preview.body.repositories.map((r) => r.slug).sort(), ["repo-11", "repo-12"]);
  const badTarget = await as("POST", MIGRATION, { json: { repositoryIds: [ids["repo-11"]], nodeIds: [999999] } });
  assert.equal(badTarget.status, 400);
  assert.equal(badTarget.body.errors[0].context, "nodeIds");
  const job = await migrate({ repositoryIds: [ids["repo-11"], ids["repo-12"]], nodeIds: [String(nodes["node-3"].id)] });
  const summary = await ended(job);
  assert.equal(summary.state, "COMPLETED", JSON.stringify(summary));
  assert.deepEqual(summary.queue, { MIGRATED: 2 });
  for (const slug of ["repo-11", "repo-12"]) assert.equal((await servingNode(slug)).name, "node-3");
});

test("a Mesh migration of ten repositories serves clones from node 2 with equal hashes, and node 1 drops its copies", async () => {
  const ten = REPOS.slice(0, 10).map((s) => ids[s]);
  const job = await migrate({ repositoryIds: ten, nodeIds: [nodes["node-2"].id], maxBytesPerSecond: { asLong: 50_000_000, present: true } });
  const busy = await as("POST", MIGRATION, { json: { repositoryIds: [ids["repo-11"]] } });
  assert.ok([200, 503].includes(busy.status), "only one migration at a time");
  if (busy.status === 200) {
    // The first one had already ended: then this one (a no-op skip) must be complete too.
    await ended(busy.body.id);
  }
  const summary = await ended(job);
  assert.equal(summary.state, "COMPLETED", JSON.stringify(summary));
  assert.equal(summary.progress, 100);
  assert.equal(summary.maxBandwidth, 50_000_000);
  assert.deepEqual(summary.queue, { MIGRATED: 10 });
  const repos = await as("GET", `${MIGRATION}/repos?migrationId=${job}&state=MIGRATED&limit=100`);
  assert.equal(repos.body.values.length, 10);
  assert.ok(repos.body.values.every((v) => v.migrationState === "MIGRATED"));
  const messages = await as("GET", `${MIGRATION}/${job}/messages?severity=INFO&limit=100`);
  assert.equal(messages.status, 200);
  assert.equal(messages.body.values.filter((m) => /content hashes equal/.test(m.text)).length, 10);
  const detail = await as("GET", `${MIGRATION}/${job}`);
  assert.equal(detail.body.state, "COMPLETED");
  for (const slug of REPOS.slice(0, 10)) {
    const on = await servingNode(slug);
    assert.equal(on.name, "node-2", `${slug} is served by node 2`);
    const got = cloneAndHash(on.href, path.join(dir, "clones", slug));
    assert.equal(got, contentHash(path.join(dir, "served", `${slug}.git`)), `${slug}: the clone from node 2 equals upstream`);
  }
  // Node 1 deletes the copies it handed over at its next check.
  await waitFor(
    () => REPOS.slice(0, 10).every((s) => !existsSync(path.join(dir, "node-1", "repos", `${ids[s]}.git`))),
    "node 1 drops the copies it handed over",
  );
  const summaries = await as("GET", `${MIGRATION}/summaries`);
  assert.ok(summaries.body.values.some((s) => s.jobId === job));
});

test("draining node 3 moves its copies away, and it then leases nothing", async () => {
  const drain = await as("PUT", `${MESH}/nodes/${nodes["node-3"].id}`, { json: { state: "DRAINING" } });
  assert.equal(drain.status, 200, drain.text);
  assert.equal(drain.body.state, "DRAINING");
  const job = (await as("GET", `${MIGRATION}/summaries`)).body.values[0].jobId;
  const summary = await ended(job);
  assert.equal(summary.state, "COMPLETED", JSON.stringify(summary));
  for (const slug of ["repo-11", "repo-12"]) {
    const on = await servingNode(slug);
    assert.notEqual(on.name, "node-3");
    assert.equal(cloneAndHash(on.href, path.join(dir, "clones", `drained-${slug}`)), contentHash(path.join(dir, "served", `${slug}.git`)));
  }
  // New work for every repository: node 3 takes none of it.
  const leasedBefore = (nodes["node-3"].process.log().match(/ leased /g) ?? []).length;
  for (const slug of REPOS) await as("POST", `/rest/mirrorfarm/1.0/repos/${ids[slug]}/sync`);
  await waitFor(async () => {
    for (const slug of REPOS) {
      const jobs = (await as("GET", `/rest/mirrorfarm/1.0/repos/${ids[slug]}/jobs`)).body;
      const list = jobs.values ?? jobs;
      if (list.some((j) => j.state === "QUEUED" || j.state === "LEASED")) return false;
    }
    return true;
  }, "every sync done");
  assert.equal((nodes["node-3"].process.log().match(/ leased /g) ?? []).length, leasedBefore, "a drained node leases nothing");
  const offline = await as("PUT", `${MESH}/nodes/${nodes["node-3"].id}`, { json: { state: "OFFLINE" } });
  assert.equal(offline.body.offline, true);
});

test("a support zip downloads, opens, and holds no secret", async () => {
  // The request waits for the node to build and upload it; the node's result wakes it, long
  // before its wait (20 s) would run out.
  let started = Date.now();
  const r = await fetch(`${worker.url}${MESH}/support-zips/${nodes["node-2"].id}`, { headers: { "PRIVATE-TOKEN": admin } });
  assert.equal(r.status, 200, await r.clone().text());
  assert.ok(Date.now() - started < 10_000, `the support zip took ${Date.now() - started} ms: its result did not wake the request`);
  assert.equal(r.headers.get("content-type"), "application/octet-stream");
  const zipPath = path.join(dir, "node-2-support.zip");
  writeFileSync(zipPath, Buffer.from(await r.arrayBuffer()));
  const listing = JSON.parse(
    execFileSync("python3", ["-c", `
import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
print(json.dumps({n: z.read(n).decode("utf-8", "replace") for n in z.namelist()}))
`, zipPath]).toString(),
  );
  assert.deepEqual(Object.keys(listing).sort(), ["README.txt", "disk.txt", "logs/node.log", "node.txt", "versions.txt"]);
  assert.match(listing["versions.txt"], /mirrorfarm-runner \d/);
  assert.match(listing["versions.txt"], /git version/);
  assert.match(listing["disk.txt"], /copies: 1\d/);
  assert.match(listing["logs/node.log"], /copy fetched from another node/);
  assert.match(listing["node.txt"], new RegExp(`node id: ${nodes["node-2"].id}`));
  const secrets = [admin, worker.sealKey, GIT_PASS, ...Object.values(nodes).map((n) => n.token)];
  for (const [name, text] of Object.entries(listing)) {
    for (const secret of secrets) assert.ok(!text.includes(secret), `${name} holds a secret`);
    assert.ok(!/mfg1\.[0-9a-f]{8}/.test(text), `${name} holds a fetch grant`);
  }
  // All nodes at once: a zip of each reachable node's zip (node 3 is offline).
  started = Date.now();
  const all = await fetch(`${worker.url}${MESH}/support-zips`, { headers: { "PRIVATE-TOKEN": admin } });
  assert.equal(all.status, 200);
  assert.ok(Date.now() - started < 10_000, `the zip of every node took ${Date.now() - started} ms`);
  const allPath = path.join(dir, "all-support.zip");
  writeFileSync(allPath, Buffer.from(await all.arrayBuffer()));
  const names = execFileSync("python3", ["-c", "import sys, zipfile; print('\\n'.join(sorted(zipfile.ZipFile(sys.argv[1]).namelist())))", allPath])
    .toString()
    .trim()
    .split("\n");
  assert.deepEqual(names, ["README.txt", `node-1-${nodes["node-1"].id}.zip`, `node-2-${nodes["node-2"].id}.zip`]);
  const offline = await as("GET", `${MESH}/support-zips/${nodes["node-3"].id}`);
  assert.equal(offline.status, 503);
  assert.ok(offline.body.errors[0].message.includes("offline"));
});

test("killing the target mid-migration leaves the source copy serving", async () => {
  const slug = "repo-01";
  const before = await servingNode(slug);
  assert.equal(before.name, "node-2");
  // Node 1 is the target; it dies before it can fetch.
  nodes["node-1"].process.child.kill("SIGKILL");
  await new Promise((r) => (nodes["node-1"].process.child.exitCode !== null || nodes["node-1"].process.child.signalCode !== null ? r() : nodes["node-1"].process.child.once("exit", r)));
  const job = await migrate({ repositoryIds: [ids[slug]], nodeIds: [nodes["node-1"].id] });
  await sleep(3_000);
  const summary = (await as("GET", `${MIGRATION}/${job}/summary`)).body;
  assert.equal(summary.endTime, undefined, "the move waits for its target");
  assert.ok(!summary.queue.MIGRATED);
  const after = await servingNode(slug);
  assert.equal(after.name, "node-2", "clones still come from the source");
  assert.equal(cloneAndHash(after.href, path.join(dir, "clones", "after-kill")), contentHash(path.join(dir, "served", `${slug}.git`)));
  // Cancelled, it ends without moving anything.
  assert.equal((await as("POST", `${MIGRATION}/${job}/cancel`)).status, 204);
  // The dead node's long poll may have leased the move just before it died: its lease runs out,
  // and the cancelled move ends without moving anything.
  const cancelled = await ended(job);
  assert.equal(cancelled.state, "CANCELED");
  assert.equal((await as("POST", `${MIGRATION}/${job}/cancel`)).status, 409);
  assert.equal((await servingNode(slug)).name, "node-2");
});
