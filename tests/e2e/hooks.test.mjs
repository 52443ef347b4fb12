// Hook scripts end to end: uploaded through the API (multipart, content in R2), attached to a
// repository, and run by a real farm node around a push mirror's push over real git: a pre hook
// refuses refs/heads/wip/* only, a post hook gets exactly the lines that moved in an environment
// with no credentials, and a hook that outlives its timeout is killed and reported.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, readFileSync, existsSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startWorker, client } from "../support/worker.mjs";
import { startGitServer } from "../support/git_http.mjs";
import { buildNode, startNode } from "../support/node.mjs";
import { git, gitEnv, refs } from "../support/git.mjs";

const API = "/rest/mirrorfarm/1.0";
const HOOKS = "/rest/api/1.0/hook-scripts";
const REPO_HOOKS = "/rest/api/1.0/projects/HK/repos/app/hook-scripts";
const GIT_USER = "hook-bot";
const GIT_PASS = "h00k-g1t-pa55";

let worker, call, admin, dir, runner, gitServer, repoId, nodeToken, outDir, boss;
const work = () => path.join(dir, "work");
const served = (name) => path.join(dir, "served", name);

/** Uploads (POST) or changes (PUT) a script as multipart, as Bitbucket's clients do. */
async function upload(method, url, fields, token = admin) {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) {
    if (k === "content") form.append("content", new Blob([v]), "hook.sh");
    else form.append(k, v);
  }
  const r = await fetch(worker.url + url, { method, headers: { "PRIVATE-TOKEN": token, "X-Atlassian-Token": "no-check" }, body: form });
  const text = await r.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: r.status, body, text };
}

async function waitFor(pred, what, ms = 30_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await pred();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 150));
  }
  assert.fail(`${what}: timed out\nrunner log:\n${runner.log().slice(-4000)}`);
}

const mirror = async (id) => (await call("GET", `/api/v4/projects/${repoId}/remote_mirrors/${id}`, { token: admin })).body;

const NO_WIP = `#!/bin/sh
# Refuses WIP branches: names them on stdout, says why on stderr.
refused=0
while read old new ref; do
  case "$ref" in refs/heads/wip/*) echo "$ref"; refused=1 ;; esac
done
if [ "$refused" = 1 ]; then echo "WIP branches are not mirrored" >&2; exit 1; fi
exit 0
`;
const recorder = (out) => `#!/bin/sh
# Records what moved and the environment it was given.
cat >> "${out}/moved.txt"
env > "${out}/env.txt"
id -un > "${out}/user.txt"
exit 0
`;
const SLOW = `#!/bin/sh
sleep 30
exit 0
`;

before(async () => {
  buildNode();
  dir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-hooks-e2e-"));
  // Where the post hook writes: open to whoever the node runs scripts as (nobody, under root).
  outDir = path.join(dir, "out");
  mkdirSync(outDir);
  chmodSync(outDir, 0o777);
  chmodSync(dir, 0o755);
  mkdirSync(path.join(dir, "served"));
  execFileSync("git", ["init", "-q", "-b", "main", work()], { env: gitEnv });
  git(work(), "commit", "-q", "--allow-empty", "-m", "first");
  git(work(), "branch", "feature");
  git(work(), "branch", "wip/a");
  git(work(), "tag", "v1");
  execFileSync("git", ["init", "-q", "--bare", served("upstream.git")], { env: gitEnv });
  git(work(), "push", "-q", served("upstream.git"), "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*");
  gitServer = await startGitServer({ root: path.join(dir, "served"), username: GIT_USER, password: GIT_PASS });
  worker = await startWorker({ allowedHosts: "127.0.0.1", retryBaseMs: 200, pollIntervalMs: 0 });
  call = client(worker.url);
  admin = worker.adminToken;
  assert.equal((await call("POST", "/rest/api/1.0/projects", { token: admin, json: { key: "HK", name: "Hooks" } })).status, 201);
  const repo = await call("POST", "/rest/api/1.0/projects/HK/repos", { token: admin, json: { name: "app", upstreamUrl: gitServer.url("upstream.git") } });
  assert.equal(repo.status, 201, repo.text);
  repoId = repo.body.id;
  assert.equal((await call("POST", "/rest/api/1.0/admin/users?name=boss", { token: admin })).status, 204);
  assert.equal((await call("PUT", "/rest/api/1.0/admin/permissions/users?name=boss&permission=ADMIN", { token: admin })).status, 204);
  boss = (await call("PUT", "/rest/access-tokens/1.0/users/boss", { token: admin, json: { name: "t" } })).body.token;
  nodeToken = (await call("POST", `${API}/nodes`, { token: admin, json: { name: "hook-node" } })).body.token;
  runner = startNode({ edgeUrl: worker.url, token: nodeToken, dataDir: path.join(dir, "node"), name: "hooks-e2e-runner", args: ["--lease-seconds", "10"], env: { MIRRORFARM_HOOK_TIMEOUT_SECS: "2" } });
});

after(async () => {
  await runner?.stop();
  await gitServer?.close();
  await worker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

let noWip, record, slow;

test("hook scripts: upload, read, change, content, attach, and their errors", async () => {
  const created = await upload("POST", HOOKS, { content: NO_WIP, name: "no-wip", description: "keep WIP home", type: "PRE" });
  assert.equal(created.status, 200, created.text);
  noWip = created.body;
  assert.deepEqual(
    { name: noWip.name, type: noWip.type, version: noWip.version, pluginKey: noWip.pluginKey, description: noWip.description },
    { name: "no-wip", type: "PRE", version: 1, pluginKey: "com.mirrorfarm.hook-scripts", description: "keep WIP home" },
  );
  assert.match(noWip.createdDate, /^\d{4}-\d\d-\d\dT/);
  const content = await fetch(`${worker.url}${HOOKS}/${noWip.id}/content`, { headers: { "PRIVATE-TOKEN": admin } });
  assert.equal(await content.text(), NO_WIP, "the content comes back from R2 as uploaded");
  // Errors: no content, a bad type, a taken name, nothing to change, not multipart; only SYS_ADMIN uploads.
  const bad = async (fields, status, context) => {
    const r = await upload("POST", HOOKS, fields);
    assert.equal(r.status, status, r.text);
    if (context) assert.equal(r.body.errors[0].context, context, r.text);
  };
  await bad({ name: "x", type: "PRE" }, 400, "content");
  await bad({ content: "#!/bin/sh\n", name: "x", type: "MIDDLE" }, 400, "type");
  await bad({ content: "#!/bin/sh\n", type: "PRE" }, 400, "name");
  await bad({ content: "#!/bin/sh\n", name: "No-Wip", type: "PRE" }, 409);
  // Without Bitbucket's XSRF header a multipart write is refused before it is read; with it, a
  // body that is not multipart is a 400.
  const noXsrf = await call("POST", HOOKS, { token: admin, json: { name: "x" } });
  assert.equal(noXsrf.status, 403, JSON.stringify(noXsrf.body));
  assert.equal(noXsrf.body.errors[0].message, "XSRF check failed");
  const notMultipart = await call("POST", HOOKS, { token: admin, json: { name: "x" }, headers: { "X-Atlassian-Token": "no-check" } });
  assert.equal(notMultipart.status, 400);
  assert.equal((await upload("POST", HOOKS, { content: "x", name: "y", type: "PRE" }, boss)).status, 401);
  assert.equal((await upload("PUT", `${HOOKS}/${noWip.id}`, {})).status, 422);
  assert.equal((await call("GET", `${HOOKS}/999999`, { token: admin })).status, 404);
  assert.equal((await call("GET", `${HOOKS}/${noWip.id}`, { token: boss })).status, 200, "ADMIN reads");
  assert.equal((await call("GET", `${HOOKS}/${noWip.id}/content`, { token: boss })).status, 401, "content is SYS_ADMIN's");

  const rec = await upload("POST", HOOKS, { content: "#!/bin/sh\nexit 3\n", name: "recorder", type: "POST" });
  assert.equal(rec.status, 200, rec.text);
  const changed = await upload("PUT", `${HOOKS}/${rec.body.id}`, { content: recorder(outDir) });
  assert.equal(changed.status, 200, changed.text);
  assert.equal(changed.body.version, 2, "new content, new version");
  record = changed.body;
  assert.equal((await upload("PUT", `${HOOKS}/${rec.body.id}`, { name: "no-wip" })).status, 409);

  // Attach to the repository (its admins may): trigger ids are checked.
  const attach = (id, triggerIds) => call("PUT", `${REPO_HOOKS}/${id}`, { token: admin, json: triggerIds ? { triggerIds } : {} });
  const bad2 = await attach(noWip.id, ["pull-request-merge"]);
  assert.equal(bad2.status, 400, bad2.text);
  assert.equal(bad2.body.errors[0].context, "triggerIds");
  const a = await attach(noWip.id, ["mirror-push"]);
  assert.equal(a.status, 200, a.text);
  assert.deepEqual({ scope: a.body.scope.type, resourceId: a.body.scope.resourceId, triggerIds: a.body.triggerIds }, { scope: "REPOSITORY", resourceId: repoId, triggerIds: ["mirror-push"] });
  assert.equal((await attach(record.id)).body.triggerIds[0], "repo-push", "no trigger ids: every change");
  assert.equal((await attach(999999, ["mirror-push"])).status, 404);
  const listed = await call("GET", REPO_HOOKS, { token: admin });
  assert.deepEqual(listed.body.values.map((c) => c.script.name), ["no-wip", "recorder"]);
});

test("a pre hook refuses refs/heads/wip/* only and the mirror says why; a post hook gets exactly what moved", async () => {
  execFileSync("git", ["init", "-q", "--bare", served("target.git")], { env: gitEnv });
  const created = await call("POST", `/api/v4/projects/${repoId}/remote_mirrors`, { token: admin, json: { url: gitServer.url("target.git"), enabled: true } });
  assert.equal(created.status, 201, created.text);
  const m = await waitFor(async () => {
    const now = await mirror(created.body.id);
    return ["failed", "finished"].includes(now.update_status) && now;
  }, "the mirror's first push");
  assert.equal(m.update_status, "failed", JSON.stringify(m));
  assert.match(m.last_error, /Hook script no-wip refused: refs\/heads\/wip\/a/);
  assert.match(m.last_error, /WIP branches are not mirrored/);
  // Everything else was pushed; the WIP branch was not.
  const target = refs(served("target.git"));
  assert.match(target, /refs\/heads\/main/);
  assert.match(target, /refs\/heads\/feature/);
  assert.match(target, /refs\/tags\/v1/);
  assert.doesNotMatch(target, /wip/);
  // The post hook got one line per ref that moved, as git's hooks get them.
  await waitFor(() => existsSync(path.join(outDir, "moved.txt")), "the post hook ran");
  const zero = "0".repeat(40);
  const expected = ["refs/heads/feature", "refs/heads/main", "refs/tags/v1"]
    .map((ref) => `${zero} ${git(work(), "rev-parse", ref)} ${ref}`);
  const moved = readFileSync(path.join(outDir, "moved.txt"), "utf8").trim().split("\n").sort();
  assert.deepEqual(moved, expected.sort());
  // Its environment: the documented variables, and no credential of the node's or the mirror's.
  const env = readFileSync(path.join(outDir, "env.txt"), "utf8");
  assert.match(env, /^MIRRORFARM_HOOK_TYPE=POST$/m);
  assert.match(env, /^MIRRORFARM_HOOK_TRIGGER=mirror-push$/m);
  assert.match(env, /^MIRRORFARM_REPOSITORY=HK\/app$/m);
  for (const secret of [nodeToken, GIT_PASS, admin]) assert.ok(!env.includes(secret), "a credential reached the hook");
  assert.doesNotMatch(env, /MIRRORFARM_NODE_TOKEN|MIRRORFARM_EDGE_URL/);
  if (process.getuid?.() === 0) assert.equal(readFileSync(path.join(outDir, "user.txt"), "utf8").trim(), "nobody", "a root node runs scripts as nobody");
});

test("a hook that sleeps past its timeout is killed and the mirror says so", async () => {
  const s = await upload("POST", HOOKS, { content: SLOW, name: "slow", type: "PRE" });
  assert.equal(s.status, 200, s.text);
  slow = s.body;
  assert.equal((await call("DELETE", `${REPO_HOOKS}/${noWip.id}`, { token: admin })).status, 204);
  assert.equal((await call("DELETE", `${REPO_HOOKS}/${noWip.id}`, { token: admin })).status, 404, "not attached any more");
  assert.equal((await call("PUT", `${REPO_HOOKS}/${slow.id}`, { token: admin, json: { triggerIds: ["mirror-push"] } })).status, 200);
  git(work(), "commit", "-q", "--allow-empty", "-m", "second");
  git(work(), "push", "-q", served("upstream.git"), "main");
  execFileSync("git", ["init", "-q", "--bare", served("slow.git")], { env: gitEnv });
  const created = await call("POST", `/api/v4/projects/${repoId}/remote_mirrors`, { token: admin, json: { url: gitServer.url("slow.git"), enabled: true } });
  const started = Date.now();
  const m = await waitFor(async () => {
    const now = await mirror(created.body.id);
    return now.update_status === "failed" && now;
  }, "the slow hook's mirror fails");
  assert.match(m.last_error, /Hook script slow did not finish within 2 s and was stopped/);
  assert.ok(Date.now() - started < 25_000, "it did not wait for the sleep");
  assert.equal(refs(served("slow.git")), "", "nothing was pushed");
  // Deleting the script detaches it everywhere.
  assert.equal((await call("DELETE", `${HOOKS}/${slow.id}`, { token: admin })).status, 204);
  const listed = await call("GET", REPO_HOOKS, { token: admin });
  assert.deepEqual(listed.body.values.map((c) => c.script.name), ["recorder"]);
});
