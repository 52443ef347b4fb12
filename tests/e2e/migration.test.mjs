// Migration export and import end to end (seed 002): two Worker instances under workerd (A and B),
// each with its farm node. On A, real repositories (served over authenticated smart HTTP) with a
// fork, labels and permission grants are exported by A's node into one archive in A's local R2;
// the archive object is copied to B's local R2 with wrangler; B's node imports it. Every
// repository B gets has A's content hash and settings; one B already had is skipped and named.
// A second import is cancelled midway (B's node pauses between repositories for this test:
// MIRRORFARM_MIGRATION_PAUSE_MS) and leaves B with whole repositories only.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startWorker, client, ROOT, OUTPUT } from "../support/worker.mjs";
import { startGitServer } from "../support/git_http.mjs";
import { contentHash, git, gitEnv } from "../support/git.mjs";
import { buildNode, startNode } from "../support/node.mjs";

const run = promisify(execFile);
const USER = "mig-bot";
const PASS = "mig-http-pa55";
const BUCKET = "mirrorfarm-blobs";
const EXPORTS = "/rest/api/1.0/migration/exports";
const IMPORTS = "/rest/api/1.0/migration/imports";
const PAUSE_MS = 1500;

let dir, gitServer, a, b, nodeA, nodeB, callA, callB;
const responses = [];
const served = (name) => path.join(dir, "served", `${name}.git`);
const work = (name) => path.join(dir, "work", name);

function client_(worker, label) {
  const call = client(worker.url);
  return async (method, url, opts = {}) => {
    const r = await call(method, url, { token: worker.adminToken, ...opts });
    responses.push(`${label} ${method} ${url} → ${r.status} ${r.text.slice(0, 400)}`);
    return r;
  };
}

/** A served repository with `commits` commits on main, a second branch and an annotated tag. */
function makeRepo(name, commits = 2) {
  execFileSync("git", ["init", "-q", "--bare", "-b", "main", served(name)], { env: gitEnv });
  execFileSync("git", ["clone", "-q", served(name), work(name)], { env: gitEnv });
  for (let i = 0; i < commits; i++) {
    writeFileSync(path.join(work(name), `f${i}.txt`), `${name} ${i}\n`.repeat(50));
    git(work(name), "add", ".");
    git(work(name), "commit", "-q", "-m", `${name} commit ${i}`);
  }
  git(work(name), "branch", "dev");
  git(work(name), "tag", "-a", "v1", "-m", `release of ${name}`);
  git(work(name), "push", "-q", "origin", "main", "dev", "v1");
}


async function until(what, probe, ms = 90_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last.ok) return last.value;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${what}: ${JSON.stringify(last?.value)}\nnode A:\n${nodeA?.log().slice(-3000)}\nnode B:\n${nodeB?.log().slice(-3000)}`);
}

/** Repositories with their published content hashes (`/rest/mirroring/…/repos`), by `KEY/slug`. */
async function published(call) {
  const r = await call("GET", "/rest/mirroring/1.0/repos?limit=1000");
  assert.equal(r.status, 200, r.text);
  return Object.fromEntries(r.body.values.map((v) => [`${v.project.key}/${v.slug}`, v]));
}

/** Creates `KEY/name` on A pulling from a served repository, and waits until A's copy hashes like it. */
async function mirroredInA(key, name) {
  const r = await callA("POST", `/rest/api/1.0/projects/${key}/repos`, { json: { name, upstreamUrl: gitServer.url(`${name}.git`) } });
  assert.equal(r.status, 201, r.text);
  assert.equal((await callA("POST", `/rest/mirrorfarm/1.0/repos/${r.body.id}/sync`)).status, 202);
  const want = await contentHash(served(name));
  await until(`A holds ${key}/${name}`, async () => {
    const v = (await published(callA))[`${key}/${name}`];
    return { ok: v?.properties?.contentHash === want, value: v?.properties };
  });
  return r.body.id;
}

async function job(call, base, id) {
  const r = await call("GET", `${base}/${id}`);
  assert.equal(r.status, 200, r.text);
  return r.body;
}

async function finished(call, base, id) {
  return until(`${base}/${id} ends`, async () => {
    const j = await job(call, base, id);
    return { ok: ["COMPLETED", "FAILED", "CANCELED"].includes(j.state), value: j };
  });
}

async function messages(call, base, id, query = "") {
  const r = await call("GET", `${base}/${id}/messages?limit=1000${query}`);
  assert.equal(r.status, 200, r.text);
  return r.body.values;
}

/** Copies an object from A's local R2 to B's, with wrangler against each Worker's state dir
 * (asynchronously: a blocked event loop would miss the Workers closing idle connections). */
async function copyArchive(fromKey, toKey) {
  const file = path.join(dir, `${path.basename(toKey)}`);
  const wrangler = path.join(ROOT, "node_modules/.bin/wrangler");
  const env = { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" };
  await run(wrangler, ["r2", "object", "get", `${BUCKET}/${fromKey}`, "--local", "--persist-to", a.stateDir, "--file", file], { cwd: ROOT, env });
  await run(wrangler, ["r2", "object", "put", `${BUCKET}/${toKey}`, "--local", "--persist-to", b.stateDir, "--file", file], { cwd: ROOT, env });
  return statSync(file).size;
}

const MIG = ["alpha", "beta", "gamma"];
const BIG = ["c1", "c2", "c3", "c4", "c5"];
let devTokenA, devTokenB;

before(async () => {
  buildNode();
  dir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-migration-e2e-"));
  mkdirSync(path.join(dir, "served"));
  mkdirSync(path.join(dir, "work"));
  gitServer = await startGitServer({ root: path.join(dir, "served"), username: USER, password: PASS });
  a = await startWorker({ allowedHosts: "127.0.0.1", retryBaseMs: 200 });
  b = await startWorker({ allowedHosts: "127.0.0.1", retryBaseMs: 200 });
  callA = client_(a, "A");
  callB = client_(b, "B");
  const tokenA = (await callA("POST", "/rest/mirrorfarm/1.0/nodes", { json: { name: "node-a" } })).body.token;
  const tokenB = (await callB("POST", "/rest/mirrorfarm/1.0/nodes", { json: { name: "node-b" } })).body.token;
  nodeA = startNode({ edgeUrl: a.url, token: tokenA, dataDir: path.join(dir, "nodeA"), name: "migration-node-a" });
  nodeB = startNode({
    edgeUrl: b.url, token: tokenB, dataDir: path.join(dir, "nodeB"), name: "migration-node-b",
    env: { MIRRORFARM_MIGRATION_PAUSE_MS: String(PAUSE_MS) },
  });
  // The same user on both instances, granted on A only.
  for (const [call, worker] of [[callA, a], [callB, b]]) {
    const u = await call("POST", "/rest/api/1.0/admin/users?name=dev&displayName=Dev&emailAddress=dev@example.com&password=dev-pa55word");
    assert.equal(u.status, 204, u.text);
    const t = await call("PUT", "/rest/access-tokens/1.0/users/dev", { json: { name: "t" } });
    assert.equal(t.status, 200, t.text);
    if (worker === a) devTokenA = t.body.token;
    else devTokenB = t.body.token;
  }
  for (const name of [...MIG, "alpha-fork", ...BIG]) makeRepo(name, BIG.includes(name) ? 6 : 2);
  assert.equal((await callA("POST", "/rest/api/1.0/projects", { json: { key: "MIG", name: "Migrated", description: "to move" } })).status, 201);
  for (const name of MIG) await mirroredInA("MIG", name);
  // A fork of alpha at its own location (a served repository of its own, one commit ahead).
  git(work("alpha-fork"), "commit", "-q", "--allow-empty", "-m", "fork only");
  git(work("alpha-fork"), "push", "-q", "origin", "main");
  const fork = await callA("POST", "/rest/api/1.0/projects/MIG/repos/alpha", { json: { name: "alpha-fork", project: { key: "MIG" }, url: gitServer.url("alpha-fork.git") } });
  assert.equal(fork.status, 201, fork.text);
  for (const label of ["team-a", "critical"]) {
    const l = await callA("POST", "/rest/api/1.0/projects/MIG/repos/alpha/labels", { json: { name: label } });
    assert.equal(l.status, 200, l.text);
  }
  const grant = await callA("PUT", "/rest/api/1.0/projects/MIG/repos/alpha/permissions/users?name=dev&permission=REPO_WRITE");
  assert.equal(grant.status, 204, grant.text);
  const pull = await callA("PUT", `/api/v4/projects/MIG%2Fbeta/mirror/pull`, { json: { only_mirror_protected_branches: true } });
  assert.equal(pull.status, 200, pull.text);
  assert.equal((await callA("POST", "/rest/api/1.0/projects", { json: { key: "BIG", name: "Bigger" } })).status, 201);
  for (const name of BIG) await mirroredInA("BIG", name);
  // B already has MIG/gamma (empty, made by hand): the import must leave it alone.
  assert.equal((await callB("POST", "/rest/api/1.0/projects", { json: { key: "MIG", name: "Migrated", description: "to move" } })).status, 201);
  assert.equal((await callB("POST", "/rest/api/1.0/projects/MIG/repos", { json: { name: "gamma", description: "B's own" } })).status, 201);
});

after(async () => {
  await nodeA?.stop();
  await nodeB?.stop();
  await gitServer?.close();
  mkdirSync(OUTPUT, { recursive: true });
  writeFileSync(path.join(OUTPUT, "migration-e2e.log"), responses.join("\n"));
  await a?.stop();
  await b?.stop();
  rmSync(dir, { recursive: true, force: true });
});

let exported;

test("A's node exports MIG into one archive in R2; credentials are left out and named per repository", async () => {
  const preview = await callA("POST", `${EXPORTS}/preview`, { json: { repositoriesRequest: { includes: [{ projectKey: "MIG", slug: "*" }] } } });
  assert.equal(preview.status, 200, preview.text);
  assert.deepEqual(
    preview.body.scopes.map((s) => `${s.type}:${s.projectKey}/${s.slug ?? ""}`),
    ["PROJECT:MIG/", "REPOSITORY:MIG/alpha", "REPOSITORY:MIG/beta", "REPOSITORY:MIG/gamma", "REPOSITORY:MIG/alpha-fork"],
    "origins before their forks",
  );
  const started = await callA("POST", EXPORTS, { json: { exportLocation: "e2e", repositoriesRequest: { includes: [{ projectKey: "MIG", slug: "*" }] } } });
  assert.equal(started.status, 200, started.text);
  assert.equal(started.body.type, "com.atlassian.bitbucket.migration.export");
  assert.equal(started.body.initiator.name, "admin");
  exported = await finished(callA, EXPORTS, started.body.id);
  assert.equal(exported.state, "COMPLETED", JSON.stringify(exported));
  assert.equal(exported.progress.percentage, 100);
  assert.equal(exported.archivePath, `migration/export/e2e/Bitbucket_export_${exported.id}.tar`);
  assert.ok(exported.endDate >= exported.startDate);
  const all = await messages(callA, EXPORTS, exported.id);
  assert.ok(all.some((m) => m.severity === "INFO" && m.text.includes(exported.archivePath)), "the archive's key is in a message");
  const warns = await messages(callA, EXPORTS, exported.id, "&severity=WARN");
  assert.deepEqual(warns.map((m) => m.subject).sort(), ["MIG/alpha", "MIG/alpha-fork", "MIG/beta", "MIG/gamma"], "one WARN per repository that had credentials");
  assert.ok(warns.every((m) => m.severity === "WARN" && /credentials/.test(m.text)));
  assert.ok(!JSON.stringify(all).includes(PASS), "no secret in any message");
  // Done: cancel is 409.
  assert.equal((await callA("POST", `${EXPORTS}/${exported.id}/cancel`)).status, 409);
});

test("the archive is copied to B's R2; a missing one is refused; B's node imports it, skipping the repository B had", async () => {
  const size = await copyArchive(exported.archivePath, "migration/import/from-a.tar");
  assert.ok(size > 1024, `the archive has bundles (${size} bytes)`);
  const missing = await callB("POST", IMPORTS, { json: { archivePath: "nothing-here.tar" } });
  assert.equal(missing.status, 400, missing.text);
  assert.equal(missing.body.errors[0].context, "archivePath");
  const escape = await callB("POST", IMPORTS, { json: { archivePath: "../avatars/x" } });
  assert.equal(escape.status, 400);
  const started = await callB("POST", IMPORTS, { json: { archivePath: "from-a.tar" } });
  assert.equal(started.status, 200, started.text);
  assert.equal(started.body.type, "com.atlassian.bitbucket.migration.import");
  const second = await callB("POST", IMPORTS, { json: { archivePath: "from-a.tar" } });
  assert.equal(second.status, 503, "one import at a time");
  const imported = await finished(callB, IMPORTS, started.body.id);
  assert.equal(imported.state, "COMPLETED", JSON.stringify(imported));
  const warns = await messages(callB, IMPORTS, imported.id, "&severity=WARN");
  assert.ok(warns.some((m) => m.subject === "MIG/gamma" && /MIG\/gamma.*skipped/.test(m.text)), JSON.stringify(warns));
  assert.equal((await messages(callB, IMPORTS, imported.id, "&severity=ERROR")).length, 0);
});

test("every imported repository has A's content, settings and permissions; B's own gamma is untouched", async () => {
  const inA = await published(callA);
  const inB = await published(callB);
  for (const name of ["alpha", "beta", "alpha-fork"]) {
    const want = name === "alpha-fork" ? await contentHash(served("alpha-fork")) : inA[`MIG/${name}`].properties.contentHash;
    assert.equal(inB[`MIG/${name}`]?.properties?.contentHash, want, `content hash of MIG/${name} on B`);
    // B's node holds the copy it imported, moved into place under the new id.
    const copy = path.join(dir, "nodeB", "repos", `${inB[`MIG/${name}`].id}.git`);
    assert.ok(existsSync(copy), `B's node holds ${name}`);
    assert.equal(await contentHash(copy), want, `B's copy of ${name}`);
    const ra = (await callA("GET", `/rest/api/1.0/projects/MIG/repos/${name}`)).body;
    const rb = (await callB("GET", `/rest/api/1.0/projects/MIG/repos/${name}`)).body;
    for (const key of ["name", "description", "defaultBranch", "public", "forkable"]) assert.deepEqual(rb[key], ra[key], `${name}.${key}`);
  }
  assert.equal((await callB("GET", "/rest/api/1.0/projects/MIG")).body.description, "to move");
  // Fork relation and labels.
  assert.equal((await callB("GET", "/rest/api/1.0/projects/MIG/repos/alpha-fork")).body.origin.slug, "alpha");
  const labels = (r) => r.body.values.map((l) => l.name).sort();
  assert.deepEqual(labels(await callB("GET", "/rest/api/1.0/projects/MIG/repos/alpha/labels")), labels(await callA("GET", "/rest/api/1.0/projects/MIG/repos/alpha/labels")));
  // The upstream URL came without its credentials; the pull-mirror settings came as they were.
  const upstream = (await callB("GET", "/rest/api/1.0/projects/MIG/repos/alpha")).body.upstreamUrl;
  assert.equal(upstream, gitServer.url("alpha.git").replace(`${USER}:${PASS}@`, ""));
  const pullA = (await callA("GET", "/api/v4/projects/MIG%2Fbeta/mirror/pull")).body;
  const pullB = (await callB("GET", "/api/v4/projects/MIG%2Fbeta/mirror/pull")).body;
  for (const key of ["enabled", "only_mirror_protected_branches", "mirror_overwrites_diverged_branches", "mirror_branch_regex"]) {
    assert.deepEqual(pullB[key], pullA[key], `pull mirror ${key}`);
  }
  // dev may see alpha (granted) and not beta, on both instances alike.
  for (const [worker, token] of [[a, devTokenA], [b, devTokenB]]) {
    const as = client(worker.url);
    assert.equal((await as("GET", "/rest/api/1.0/projects/MIG/repos/alpha", { token })).status, 200);
    assert.notEqual((await as("GET", "/rest/api/1.0/projects/MIG/repos/beta", { token })).status, 200);
  }
  const gamma = (await callB("GET", "/rest/api/1.0/projects/MIG/repos/gamma")).body;
  assert.equal(gamma.description, "B's own", "the repository B had is left alone");
});

test("an import cancelled midway stops between repositories: B holds whole repositories only", async () => {
  const started = await callA("POST", EXPORTS, { json: { repositoriesRequest: { includes: [{ projectKey: "BIG", slug: "*" }] } } });
  assert.equal(started.status, 200, started.text);
  const big = await finished(callA, EXPORTS, started.body.id);
  assert.equal(big.state, "COMPLETED", JSON.stringify(big));
  await copyArchive(big.archivePath, "migration/import/big.tar");
  const imp = await callB("POST", IMPORTS, { json: { archivePath: "migration/import/big.tar" } });
  assert.equal(imp.status, 200, imp.text);
  // B's node waits PAUSE_MS between repositories: cancel once the first is in.
  await until("the first repository is imported", async () => {
    const m = await messages(callB, IMPORTS, imp.body.id, "&severity=INFO");
    return { ok: m.some((x) => x.text.startsWith("Imported repository BIG/")), value: m };
  });
  const cancel = await callB("POST", `${IMPORTS}/${imp.body.id}/cancel`);
  assert.equal(cancel.status, 204, cancel.text);
  const again = await callB("POST", `${IMPORTS}/${imp.body.id}/cancel`);
  assert.equal(again.status, 409, "already cancelled");
  const ended = await finished(callB, IMPORTS, imp.body.id);
  assert.equal(ended.state, "CANCELED", JSON.stringify(ended));
  const inA = await published(callA);
  const inB = await published(callB);
  const have = BIG.filter((n) => inB[`BIG/${n}`]);
  assert.ok(have.length >= 1 && have.length < BIG.length, `some but not all: ${have}`);
  for (const name of have) {
    assert.equal(inB[`BIG/${name}`].properties.contentHash, inA[`BIG/${name}`].properties.contentHash, `BIG/${name} is whole`);
    const copy = path.join(dir, "nodeB", "repos", `${inB[`BIG/${name}`].id}.git`);
    assert.equal(await contentHash(copy), inA[`BIG/${name}`].properties.contentHash, `B's copy of BIG/${name}`);
  }
  console.log(`# cancelled after ${have.length} of ${BIG.length} repositories`);
});
