// Instance administration (seed 002) end to end, against the Worker under workerd with real local
// D1, R2 and Durable Objects: users and passwords, rate limits (a Durable Object per user, exact
// under concurrency), the banner, the default branch, repository policies and archiving, labels,
// log levels (the edge's own logging, and a farm node's at its next heartbeat), licenses
// (Ed25519, checked by WebCrypto), application properties and the cluster.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { generateKeyPairSync, sign } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startWorker, client, ROOT } from "../support/worker.mjs";

const BB = "/rest/api/1.0";
const API = "/rest/mirrorfarm/1.0";
const RUNNER = path.join(ROOT, "target/debug/mirrorfarm-runner");

const keys = generateKeyPairSync("ed25519");
const publicKeyHex = keys.publicKey.export({ format: "der", type: "spki" }).subarray(-32).toString("hex");
const stranger = generateKeyPairSync("ed25519");

let worker, call, admin, dir;
const basic = (user, secret) => ({ Authorization: `Basic ${Buffer.from(`${user}:${secret}`).toString("base64")}` });

/** A license in our format: base64url(JSON).base64url(Ed25519 signature of the first part). */
function license(terms, privateKey = keys.privateKey) {
  const payload = Buffer.from(JSON.stringify(terms)).toString("base64url");
  return `${payload}.${sign(null, Buffer.from(payload), privateKey).toString("base64url")}`;
}

async function createUser(name, password) {
  const q = new URLSearchParams({ name, displayName: `${name} person`, emailAddress: `${name}@example.com` });
  if (password) q.set("password", password);
  const r = await call("POST", `${BB}/admin/users?${q}`, { token: admin });
  assert.equal(r.status, 204, r.text);
}

async function tokenFor(slug) {
  const r = await call("PUT", `/rest/access-tokens/1.0/users/${slug}`, { token: admin, json: { name: "t" } });
  assert.equal(r.status, 200, r.text);
  return r.body.token;
}

async function until(what, probe, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`timed out waiting for ${what}`);
}

before(async () => {
  execFileSync("cargo", ["build", "-q", "-p", "mirrorfarm-runner"], { cwd: ROOT, stdio: "inherit" });
  dir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-admin-e2e-"));
  worker = await startWorker({ licensePublicKey: publicKeyHex });
  call = client(worker.url);
  admin = worker.adminToken;
  assert.equal((await call("POST", `${BB}/projects`, { token: admin, json: { key: "ADM", name: "Admin" } })).status, 201);
  assert.equal((await call("POST", `${BB}/projects/ADM/repos`, { token: admin, json: { name: "app" } })).status, 201);
});

after(async () => {
  await worker?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("passwords: created with the user, checked on Basic sign-in, changed only with the old one", async () => {
  await createUser("alice", "first-pass-1");
  const me = await call("GET", `${BB}/users/alice`, { headers: basic("alice", "first-pass-1") });
  assert.equal(me.status, 200, me.text);
  assert.equal(me.body.slug, "alice");
  // Not an administrator: the plain view.
  assert.equal(me.body.directoryName, undefined);
  const wrong = await call("GET", `${BB}/users/alice`, { headers: basic("alice", "not-the-pass") });
  assert.equal(wrong.status, 401);
  assert.match(wrong.body.errors[0].message, /Authentication failed/);
  assert.equal((await call("GET", `${BB}/users/alice`, { headers: basic("nobody", "first-pass-1") })).status, 401);
  // A token works next to the password.
  const token = await tokenFor("alice");
  assert.equal((await call("GET", `${BB}/users/alice`, { headers: basic("alice", token) })).status, 200);

  const creds = (json) => call("PUT", `${BB}/users/credentials`, { headers: basic("alice", "first-pass-1"), json });
  let r = await creds({ oldPassword: "wrong-old-1", password: "second-pass-2", passwordConfirm: "second-pass-2" });
  assert.equal(r.status, 400);
  assert.equal(r.body.errors[0].context, "oldPassword");
  r = await creds({ oldPassword: "first-pass-1", password: "second-pass-2", passwordConfirm: "different-2" });
  assert.deepEqual([r.status, r.body.errors[0].context], [400, "passwordConfirm"]);
  r = await creds({ oldPassword: "first-pass-1", password: "short", passwordConfirm: "short" });
  assert.deepEqual([r.status, r.body.errors[0].context], [400, "password"]);
  r = await creds({ oldPassword: "first-pass-1", password: "second-pass-2", passwordConfirm: "second-pass-2" });
  assert.equal(r.status, 204, r.text);
  assert.equal((await call("GET", `${BB}/users/alice`, { headers: basic("alice", "first-pass-1") })).status, 401);
  assert.equal((await call("GET", `${BB}/users/alice`, { headers: basic("alice", "second-pass-2") })).status, 200);
  // A bad new password at creation.
  const bad = await call("POST", `${BB}/admin/users?name=bob&password=short`, { token: admin });
  assert.deepEqual([bad.status, bad.body.errors[0].context], [400, "password"]);
  for (const secret of ["first-pass-1", "second-pass-2"]) assert.ok(!worker.logs().includes(secret), "no password in the log");
});

test("users: a page with filter, permission and group; the admin view; one's own details and settings", async () => {
  await createUser("carol");
  const alice = basic("alice", "second-pass-2");
  let r = await call("GET", `${BB}/users?filter=caro`, { headers: alice });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body.values.map((u) => u.slug), ["carol"]);
  assert.equal(r.body.isLastPage, true);
  r = await call("GET", `${BB}/users?permission=SYS_ADMIN`, { headers: alice });
  assert.deepEqual(r.body.values.map((u) => u.slug), ["admin"]);
  r = await call("GET", `${BB}/users?permission=LICENSED_USER&limit=2`, { headers: alice });
  assert.deepEqual([r.body.values.length, r.body.isLastPage], [2, false]);
  assert.equal((await call("GET", `${BB}/users?group=developers`, { headers: alice })).body.size, 0);
  r = await call("GET", `${BB}/users?permission=NOT_A_PERMISSION`, { headers: alice });
  assert.deepEqual([r.status, r.body.errors[0].context], [400, "permission"]);
  r = await call("GET", `${BB}/users/carol`, { token: admin });
  assert.equal(r.body.directoryName, "Bitbucket Internal Directory");
  assert.equal(r.body.deletable, true);
  r = await call("GET", `${BB}/admin/users?filter=alice`, { token: admin });
  assert.equal(r.body.values[0].mutableDetails, true);
  assert.equal((await call("GET", `${BB}/admin/users`, { headers: alice })).status, 401);

  r = await call("PUT", `${BB}/users`, { headers: alice, json: { displayName: "Alice A.", email: "a@example.org" } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual([r.body.displayName, r.body.emailAddress], ["Alice A.", "a@example.org"]);
  assert.equal((await call("GET", `${BB}/users/alice`, { token: admin })).body.displayName, "Alice A.");
  r = await call("PUT", `${BB}/users`, { headers: alice, json: { name: "carol", displayName: "x" } });
  assert.equal(r.status, 400);
  assert.equal((await call("PUT", `${BB}/users`, { headers: alice, json: { email: "no-at-sign" } })).status, 400);

  r = await call("POST", `${BB}/users/alice/settings`, { headers: alice, json: { theme: "dark", wrap: true, size: 3 } });
  assert.equal(r.status, 204, r.text);
  assert.equal((await call("POST", `${BB}/users/alice/settings`, { headers: alice, json: { wrap: null, lang: "en" } })).status, 204);
  assert.deepEqual((await call("GET", `${BB}/users/alice/settings`, { headers: alice })).body, { lang: "en", size: 3, theme: "dark" });
  assert.equal((await call("POST", `${BB}/users/alice/settings`, { headers: alice, json: { nested: { a: 1 } } })).status, 400);
  assert.equal((await call("GET", `${BB}/users/carol/settings`, { headers: alice })).status, 401);
  assert.deepEqual((await call("GET", `${BB}/users/alice/settings`, { token: admin })).body.theme, "dark");
});

/** A PNG's first bytes: signature and IHDR, enough for the header check. */
function png(width, height) {
  const b = Buffer.alloc(33);
  Buffer.from("89504e470d0a1a0a0000000d49484452", "hex").copy(b, 0);
  b.writeUInt32BE(width, 16);
  b.writeUInt32BE(height, 20);
  b.set([8, 6, 0, 0, 0], 24);
  return b;
}

function avatarUpload(name, bytes) {
  const form = new FormData();
  form.append(name, new Blob([bytes], { type: "image/png" }), "me.png");
  return form;
}

test("avatars: uploaded multipart, checked by their header, stored in R2 and served", async () => {
  const alice = basic("alice", "second-pass-2");
  const up = (form, headers = alice) => fetch(`${worker.url}${BB}/users/alice/avatar.png`, { method: "POST", headers: { ...headers, "X-Atlassian-Token": "no-check" }, body: form });
  let r = await up(avatarUpload("avatar", png(64, 48)));
  assert.equal(r.status, 201, await r.clone().text());
  const location = r.headers.get("location");
  assert.equal(location, `${worker.url}/users/alice/avatar.png`);
  let served = await fetch(location);
  assert.equal(served.headers.get("content-type"), "image/png");
  assert.deepEqual(Buffer.from(await served.arrayBuffer()), png(64, 48));
  r = await up(avatarUpload("avatar", png(2048, 10)));
  assert.equal(r.status, 400);
  assert.match((await r.json()).errors[0].message, /1024×1024/);
  r = await up(avatarUpload("avatar", Buffer.from("<svg xmlns='http://www.w3.org/2000/svg'/>")));
  assert.equal(r.status, 400);
  r = await up(avatarUpload("picture", png(8, 8)));
  assert.match((await r.json()).errors[0].message, /no part named "avatar"/);
  assert.equal((await up(avatarUpload("avatar", png(8, 8)), basic("carol", "x"))).status, 401);
  const gone = await call("DELETE", `${BB}/users/alice/avatar.png`, { headers: alice });
  assert.equal(gone.status, 200);
  assert.equal(gone.body.href, location);
  served = await fetch(location);
  assert.equal(served.headers.get("content-type"), "image/svg+xml");
  assert.match(await served.text(), />A<\/text>/);
});

test("the rate limit: exact under a concurrent burst, 429 with Retry-After, history, whitelist, and slowed guessing", async () => {
  let r = await call("GET", `${BB}/admin/rate-limit/settings`, { headers: basic("alice", "second-pass-2") });
  assert.deepEqual(r.body, { enabled: false, defaultSettings: { capacity: 60, fillRate: 5 } });
  await createUser("burst");
  await createUser("exempt");
  await createUser("guesser", "guess-me-right");
  const [burst, exempt] = [await tokenFor("burst"), await tokenFor("exempt")];
  r = await call("POST", `${BB}/admin/rate-limit/settings/users`, { token: admin, json: { usernames: ["burst", "guesser"], settings: { capacity: 10, fillRate: 1 } } });
  assert.equal(r.status, 200, r.text);
  r = await call("PUT", `${BB}/admin/rate-limit/settings/users/exempt`, { token: admin, json: { whitelisted: true } });
  assert.deepEqual([r.status, r.body.whitelisted], [200, true]);
  assert.equal((await call("POST", `${BB}/admin/rate-limit/settings/users`, { token: admin, json: { usernames: ["nobody"], whitelisted: true } })).status, 404);
  assert.equal((await call("PUT", `${BB}/admin/rate-limit/settings/users/burst`, { token: admin, json: { settings: { capacity: 0, fillRate: 1 } } })).status, 400);
  r = await call("GET", `${BB}/admin/rate-limit/settings/users?filter=bur`, { token: admin });
  assert.deepEqual(r.body.values.map((v) => [v.user.slug, v.settings.capacity, v.whitelisted]), [["burst", 10, false]]);
  assert.equal((await call("GET", `${BB}/admin/rate-limit/settings/users/burst`, { token: burst })).body.settings.fillRate, 1);
  assert.equal((await call("GET", `${BB}/admin/rate-limit/settings/users/exempt`, { token: burst })).status, 401);
  assert.equal((await call("PUT", `${BB}/admin/rate-limit/settings`, { token: admin, json: { defaultSettings: { capacity: 5, fillRate: 1 } } })).status, 400);
  r = await call("PUT", `${BB}/admin/rate-limit/settings`, { token: admin, json: { enabled: true } });
  assert.deepEqual(r.body, { enabled: true, defaultSettings: { capacity: 60, fillRate: 5 } });

  // 40 at once against a bucket of 10 refilled at 1 per second.
  const started = Date.now();
  const answers = await Promise.all(Array.from({ length: 40 }, () => call("GET", `${BB}/projects`, { token: burst })));
  const elapsed = Date.now() - started;
  const ok = answers.filter((a) => a.status === 200).length;
  const limited = answers.filter((a) => a.status === 429);
  console.log(`rate limit burst: ${ok} answered, ${limited.length} × 429 in ${elapsed} ms`);
  assert.equal(ok + limited.length, 40);
  // Exact: the capacity, plus what the refill added while the burst lasted.
  assert.ok(ok >= 10 && ok <= 10 + Math.floor(elapsed / 1000), `${ok} answered in ${elapsed} ms`);
  const refused = limited[0];
  assert.ok(Number(refused.headers.get("retry-after")) >= 1);
  assert.match(refused.body.errors[0].message, /too many requests/i);
  r = await call("GET", `${BB}/admin/rate-limit/history?order=FREQUENCY`, { token: admin });
  assert.equal(r.status, 200);
  assert.equal(r.body.values[0].user.slug, "burst");
  assert.equal(r.body.values[0].rejectCount, limited.length);
  assert.ok(r.body.values[0].lastRejectTime >= started);
  assert.equal((await call("GET", `${BB}/admin/rate-limit/history?order=OLDEST`, { token: admin })).status, 400);

  // Exempt users, anonymous callers and farm nodes are not limited.
  const free = await Promise.all(Array.from({ length: 40 }, () => call("GET", `${BB}/projects`, { token: exempt })));
  assert.ok(free.every((a) => a.status === 200));
  const node = (await call("POST", `${API}/nodes`, { token: admin, json: { name: "rl-node" } })).body.token;
  const beats = await Promise.all(Array.from({ length: 15 }, () => call("POST", `${API}/nodes/heartbeat`, { headers: { Authorization: `Bearer ${node}` }, json: {} })));
  assert.ok(beats.every((a) => a.status === 200));

  // Guessing a password spends the user's tokens: after the bucket, 429 instead of 401.
  const guesses = [];
  for (let i = 0; i < 13; i++) guesses.push((await call("GET", `${BB}/users/guesser`, { headers: basic("guesser", `wrong-${i}`) })).status);
  assert.deepEqual(guesses.slice(0, 10), Array(10).fill(401));
  assert.ok(guesses.slice(10).includes(429), `guesses: ${guesses}`);

  assert.equal((await call("DELETE", `${BB}/admin/rate-limit/settings/users/burst`, { token: admin })).status, 204);
  assert.equal((await call("DELETE", `${BB}/admin/rate-limit/settings/users/burst`, { token: admin })).status, 404);
  assert.equal((await call("PUT", `${BB}/admin/rate-limit/settings`, { token: admin, json: { enabled: false } })).status, 200);
  assert.equal((await call("GET", `${BB}/projects`, { token: burst })).status, 200);
});

test("the banner: 204 when none, audience required, shown to its audience only", async () => {
  assert.equal((await call("GET", `${BB}/admin/banner`)).status, 204);
  let r = await call("PUT", `${BB}/admin/banner`, { token: admin, json: { message: "hi", enabled: true } });
  assert.deepEqual([r.status, r.body.errors[0].context], [400, "audience"]);
  assert.equal((await call("PUT", `${BB}/admin/banner`, { headers: basic("alice", "second-pass-2"), json: { message: "x", audience: "ALL" } })).status, 401);
  assert.equal((await call("PUT", `${BB}/admin/banner`, { token: admin, json: { message: "Upgrade at 6", enabled: true, audience: "AUTHENTICATED" } })).status, 204);
  assert.deepEqual((await call("GET", `${BB}/admin/banner`, { token: admin })).body, { message: "Upgrade at 6", enabled: true, audience: "AUTHENTICATED" });
  assert.equal((await call("GET", `${BB}/admin/banner`)).status, 204, "anonymous callers are not its audience");
  assert.equal((await call("PUT", `${BB}/admin/banner`, { token: admin, json: { message: "For all", audience: "all" } })).status, 204);
  assert.equal((await call("GET", `${BB}/admin/banner`)).body.message, "For all");
  assert.equal((await call("DELETE", `${BB}/admin/banner`, { token: admin })).status, 204);
  assert.equal((await call("DELETE", `${BB}/admin/banner`, { token: admin })).status, 204);
  assert.equal((await call("GET", `${BB}/admin/banner`, { token: admin })).status, 204);
});

test("the global default branch: 404 unset, either spelling, given to new repositories", async () => {
  assert.equal((await call("GET", `${BB}/admin/default-branch`, { token: admin })).status, 404);
  assert.equal((await call("PUT", `${BB}/admin/default-branch`, { token: admin, json: { id: "bad..name" } })).status, 400);
  assert.equal((await call("PUT", `${BB}/admin/default-branch`, { token: admin, json: { id: "refs/heads/trunk" } })).status, 204);
  assert.deepEqual((await call("GET", `${BB}/admin/default-branch`, { token: admin })).body, { id: "refs/heads/trunk", displayId: "trunk", type: "BRANCH" });
  assert.equal((await call("PUT", `${BB}/admin/default-branch`, { token: admin, json: { id: "develop" } })).status, 204);
  let r = await call("POST", `${BB}/projects/ADM/repos`, { token: admin, json: { name: "fresh" } });
  assert.equal(r.body.defaultBranch, "develop");
  r = await call("POST", `${BB}/projects/ADM/repos`, { token: admin, json: { name: "chosen", defaultBranch: "main" } });
  assert.equal(r.body.defaultBranch, "main");
  assert.equal((await call("DELETE", `${BB}/admin/default-branch`, { token: admin })).status, 204);
  assert.equal((await call("GET", `${BB}/admin/default-branch`, { token: admin })).status, 404);
  r = await call("POST", `${BB}/projects/ADM/repos`, { token: admin, json: { name: "after" } });
  assert.equal(r.body.defaultBranch, "main");
});

test("repository policies: who may delete or archive is enforced; an archived repository is not synced", async () => {
  await createUser("repoadm", "repo-admin-pw");
  await createUser("projadm", "proj-admin-pw");
  await createUser("globadm", "glob-admin-pw");
  const repoAdmin = basic("repoadm", "repo-admin-pw");
  const projectAdmin = basic("projadm", "proj-admin-pw");
  const globalAdmin = basic("globadm", "glob-admin-pw");
  for (const slug of ["app", "fresh", "chosen", "after"]) {
    assert.equal((await call("PUT", `${BB}/projects/ADM/repos/${slug}/permissions/users?name=repoadm&permission=REPO_ADMIN`, { token: admin })).status, 204);
  }
  assert.equal((await call("PUT", `${BB}/projects/ADM/permissions/users?name=projadm&permission=PROJECT_ADMIN`, { token: admin })).status, 204);
  assert.equal((await call("PUT", `${BB}/admin/permissions/users?name=globadm&permission=ADMIN`, { token: admin })).status, 204);

  const policy = "/rest/policies/1.0/admin/repos";
  assert.deepEqual((await call("GET", `${policy}/delete`, { headers: repoAdmin })).body, { permission: "REPO_ADMIN" });
  assert.equal((await call("GET", `${policy}/delete`)).status, 401);
  assert.equal((await call("PUT", `${policy}/delete`, { headers: globalAdmin, json: { permission: "ADMIN" } })).status, 401, "SYS_ADMIN only");
  assert.equal((await call("PUT", `${policy}/delete`, { token: admin, json: { permission: "OWNER" } })).status, 400);
  assert.deepEqual((await call("PUT", `${policy}/delete`, { token: admin, json: { permission: "ADMIN" } })).body, { permission: "ADMIN" });
  assert.deepEqual((await call("PUT", `${policy}/archive`, { token: admin, json: { permission: "PROJECT_ADMIN" } })).body, { permission: "PROJECT_ADMIN" });

  // Delete needs ADMIN now: the repository's admin is refused, a global admin is not.
  assert.equal((await call("DELETE", `${BB}/projects/ADM/repos/after`, { headers: repoAdmin })).status, 401);
  assert.equal((await call("GET", `${BB}/projects/ADM/repos/after`, { token: admin })).status, 200, "still there");
  assert.equal((await call("DELETE", `${BB}/projects/ADM/repos/after`, { headers: globalAdmin })).status, 202);

  // Archive needs PROJECT_ADMIN. A repository with an upstream and a queued pull is archived:
  // nodes are not given its pull until it is unarchived.
  const mirrored = await call("POST", `${BB}/projects/ADM/repos`, { token: admin, json: { name: "mirrored", upstreamUrl: "https://example.com/up.git" } });
  assert.equal(mirrored.status, 201, mirrored.text);
  assert.equal((await call("PUT", `${BB}/projects/ADM/repos/mirrored/permissions/users?name=repoadm&permission=REPO_ADMIN`, { token: admin })).status, 204);
  assert.equal((await call("POST", `${API}/repos/${mirrored.body.id}/sync`, { token: admin })).status, 202);
  assert.equal((await call("PUT", `${BB}/projects/ADM/repos/mirrored`, { headers: repoAdmin, json: { archived: true } })).status, 401);
  let r = await call("PUT", `${BB}/projects/ADM/repos/mirrored`, { headers: repoAdmin, json: { description: "Pulled from up" } });
  assert.deepEqual([r.status, r.body.description], [200, "Pulled from up"], "other changes need only REPO_ADMIN");
  r = await call("PUT", `${BB}/projects/ADM/repos/mirrored`, { headers: projectAdmin, json: { archived: true } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.archived, true);
  assert.equal((await call("GET", `${BB}/projects/ADM/repos/mirrored`, { token: admin })).body.archived, true);
  const sync = await call("POST", `${API}/repos/${mirrored.body.id}/sync`, { token: admin });
  assert.equal(sync.status, 409);
  assert.match(sync.body.errors[0].message, /archived/);
  // GitLab's pull start says so in GitLab's shape.
  const pull = await call("POST", `/api/v4/projects/${mirrored.body.id}/mirror/pull`, { token: admin });
  assert.equal(pull.status, 409);
  assert.match(pull.body.message, /^409 Conflict - The repository is archived/);
  const node = (await call("POST", `${API}/nodes`, { token: admin, json: { name: "policy-node" } })).body.token;
  const lease = () => call("POST", `${API}/jobs/lease`, { headers: { Authorization: `Bearer ${node}` }, json: { leaseSeconds: 30, waitSeconds: 0 } });
  r = await lease();
  assert.equal(r.status, 204, `nothing to lease while archived: ${r.text}`);
  assert.equal((await call("PUT", `${BB}/projects/ADM/repos/mirrored`, { headers: projectAdmin, json: { archived: false } })).body.archived, false);
  r = await lease();
  assert.equal(r.status, 200, r.text);
  assert.deepEqual([r.body.kind, r.body.repository?.id], ["PULL_MIRROR", mirrored.body.id]);
  assert.equal((await call("PUT", `${BB}/projects/ADM/repos/mirrored`, { token: admin, json: { name: "renamed" } })).status, 400);
});

test("labels: set as atlassian-python-api sends them, listed, found by prefix and name, and removed", async () => {
  const repoAdmin = basic("repoadm", "repo-admin-pw");
  let r = await call("POST", `${BB}/projects/ADM/repos/app/labels`, { headers: repoAdmin, json: { name: "Backend" } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.body, { name: "backend" });
  assert.equal((await call("POST", `${BB}/projects/ADM/repos/fresh/labels`, { headers: repoAdmin, json: { name: "backend" } })).status, 200);
  assert.equal((await call("POST", `${BB}/projects/ADM/repos/app/labels`, { headers: repoAdmin, json: { name: "beta" } })).status, 200);
  assert.equal((await call("POST", `${BB}/projects/ADM/repos/app/labels`, { headers: repoAdmin, json: { name: "no spaces" } })).status, 400);
  assert.equal((await call("POST", `${BB}/projects/ADM/repos/app/labels`, { headers: basic("alice", "second-pass-2"), json: { name: "x-label" } })).status, 404, "alice cannot see it");
  assert.deepEqual((await call("GET", `${BB}/projects/ADM/repos/app/labels`, { headers: repoAdmin })).body.values, [{ name: "backend" }, { name: "beta" }]);
  assert.deepEqual((await call("GET", `${BB}/labels?prefix=ba`, { token: admin })).body.values, [{ name: "backend" }]);
  assert.equal((await call("GET", `${BB}/labels`, { token: admin })).body.size, 2);
  assert.equal((await call("GET", `${BB}/labels`)).status, 401, "labels need a signed-in caller (seed 002)");
  assert.deepEqual((await call("GET", `${BB}/labels/backend`, { token: admin })).body, { name: "backend" });
  assert.equal((await call("GET", `${BB}/labels/nothing`, { token: admin })).status, 404);
  r = await call("GET", `${BB}/labels/backend/labeled?type=REPOSITORY`, { token: admin });
  assert.deepEqual(r.body.values.map((v) => [v.slug, v.labelableType]), [["app", "REPOSITORY"], ["fresh", "REPOSITORY"]]);
  assert.equal((await call("GET", `${BB}/labels/backend/labeled?type=PROJECT`, { token: admin })).status, 400);
  assert.equal((await call("DELETE", `${BB}/projects/ADM/repos/app/labels/beta`, { headers: repoAdmin })).status, 204);
  assert.equal((await call("DELETE", `${BB}/projects/ADM/repos/app/labels/beta`, { headers: repoAdmin })).status, 404);
});

test("log levels: read and set in any case, the edge's request log obeys them, and a node takes them up at its next heartbeat", async () => {
  assert.deepEqual((await call("GET", `${BB}/logs/rootLogger`, { token: admin })).body, { logLevel: "INFO" });
  assert.equal((await call("PUT", `${BB}/logs/rootLogger/verbose`, { token: admin })).status, 400);
  assert.equal((await call("PUT", `${BB}/logs/rootLogger/warn`, { token: admin })).status, 204);
  assert.deepEqual((await call("GET", `${BB}/logs/logger/mirrorfarm.edge.requests`, { token: admin })).body, { logLevel: "WARN" }, "inherited");
  assert.equal((await call("GET", `${BB}/logs/rootLogger`, { headers: basic("alice", "second-pass-2") })).status, 401);
  // WARN: no request lines.
  await call("GET", `${BB}/projects/ADM?marker=quiet`, { token: admin });
  await call("GET", `${API}/health`);
  assert.doesNotMatch(worker.logs(), /GET \/rest\/api\/1\.0\/projects\/ADM -> 200/);
  // DEBUG for the request logger: request lines and their D1 detail.
  assert.equal((await call("PUT", `${BB}/logs/logger/mirrorfarm.edge.requests/Debug`, { token: admin })).status, 204);
  await call("GET", `${BB}/projects/ADM/repos/app`, { token: admin });
  await until("the request line", () => /GET \/rest\/api\/1\.0\/projects\/ADM\/repos\/app -> 200/.test(worker.logs()));
  // Its DEBUG line is written just after it, and can reach the log a moment later.
  await until("the DEBUG line", () => /DEBUG GET \/rest\/api\/1\.0\/projects\/ADM\/repos\/app:/.test(worker.logs()));
  assert.match(worker.logs(), /DEBUG GET \/rest\/api\/1\.0\/projects\/ADM\/repos\/app: d1;desc="\d+ round trips?"/);
  // Still no line for the requests made at WARN, now that later lines are in (a signed-in
  // request's line is written at once; one whose levels the isolate had to read, just after).
  assert.doesNotMatch(worker.logs(), /GET \/rest\/api\/1\.0\/projects\/ADM -> 200/);

  // A node: quiet at INFO, DEBUG lines only once an administrator asks for them.
  assert.equal((await call("PUT", `${BB}/logs/rootLogger/INFO`, { token: admin })).status, 204);
  const token = (await call("POST", `${API}/nodes`, { token: admin, json: { name: "log-node" } })).body.token;
  let log = "";
  // The node's own default (INFO): no MIRRORFARM_LOG.
  const env = { ...process.env, MIRRORFARM_NODE_TOKEN: token, MIRRORFARM_HEARTBEAT_SECS: "1", NO_COLOR: "1" };
  delete env.MIRRORFARM_LOG;
  const child = spawn(RUNNER, ["run", "--edge-url", worker.url, "--data-dir", path.join(dir, "node"), "--poll-ms", "200"], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  try {
    await until("the node to start", () => /node starting/.test(log));
    await new Promise((r) => setTimeout(r, 2500));
    assert.doesNotMatch(log, /DEBUG/, "no DEBUG lines at INFO");
    assert.equal((await call("PUT", `${BB}/logs/logger/mirrorfarm.node/DEBUG`, { token: admin })).status, 204);
    await until("a DEBUG line from the node", () => /DEBUG.*heartbeat answered/.test(log));
    assert.match(log, /log levels changed at the edge/);
    assert.match(log, /mirrorfarm_runner=debug/);
  } finally {
    child.kill("SIGTERM");
    await new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
  }
});

test("licenses: Ed25519-signed, checked by WebCrypto; the user count is enforced", async () => {
  assert.equal((await call("GET", `${BB}/admin/license`, { token: admin })).status, 404);
  assert.equal((await call("POST", `${BB}/admin/license`, { token: admin, json: {} })).status, 400);
  let r = await call("POST", `${BB}/admin/license`, { token: admin, json: { license: "not a license" } });
  assert.equal(r.status, 409);
  assert.match(r.body.errors[0].message, /could not be decoded/);
  const users = (await call("GET", `${BB}/admin/users?limit=1000`, { token: admin })).body.size;
  const terms = { licensee: "Acme", maximumNumberOfUsers: users + 1, expiryDate: Date.now() + 86_400_000 * 30, creationDate: Date.now(), serverId: "B1" };
  r = await call("POST", `${BB}/admin/license`, { token: admin, json: { license: license(terms, stranger.privateKey) } });
  assert.equal(r.status, 409);
  assert.match(r.body.errors[0].message, /not signed by this server's license key/);
  r = await call("POST", `${BB}/admin/license`, { token: admin, json: { license: license({ ...terms, expiryDate: Date.now() - 1000 }) } });
  assert.deepEqual([r.status, /expired/.test(r.body.errors[0].message)], [409, true]);
  assert.equal((await call("POST", `${BB}/admin/license`, { headers: basic("globadm", "glob-admin-pw"), json: { license: license(terms) } })).status, 401, "SYS_ADMIN only");
  r = await call("POST", `${BB}/admin/license`, { token: admin, json: { license: license(terms) } });
  assert.equal(r.status, 200, r.text);
  r = await call("GET", `${BB}/admin/license`, { token: admin });
  assert.equal(r.body.maximumNumberOfUsers, users + 1);
  assert.deepEqual(r.body.status, { serverId: "B1", currentNumberOfUsers: users });
  assert.equal(r.body.licensee, "Acme");
  assert.equal(r.body.unlimitedNumberOfUsers, false);
  await createUser("lastseat");
  r = await call("POST", `${BB}/admin/users?name=oneTooMany`, { token: admin });
  assert.equal(r.status, 409);
  assert.match(r.body.errors[0].message, /license allows \d+ users/);
  assert.equal((await call("GET", `${BB}/admin/license`, { token: admin })).body.status.currentNumberOfUsers, users + 1);
  // An unlimited license lifts it.
  assert.equal((await call("POST", `${BB}/admin/license`, { token: admin, json: { license: license({ ...terms, maximumNumberOfUsers: -1 }) } })).status, 200);
  await createUser("oneTooMany");
});

test("application properties (no sign-in, all strings) and the cluster (address and hostName)", async () => {
  const r = await call("GET", `${BB}/application-properties`);
  assert.equal(r.status, 200);
  for (const key of ["version", "buildNumber", "buildDate", "displayName"]) assert.equal(typeof r.body[key], "string", key);
  const cluster = await call("GET", `${BB}/admin/cluster`, { token: admin });
  assert.equal(cluster.status, 200, cluster.text);
  assert.equal(cluster.body.running, true);
  assert.equal(cluster.body.localNode.local, true);
  assert.equal(cluster.body.localNode.address.address, "127.0.0.1");
  assert.equal(cluster.body.localNode.address.hostName, "127.0.0.1");
  const names = cluster.body.nodes.map((n) => n.name);
  assert.ok(names.includes("edge") && names.includes("log-node"), names.join(","));
  for (const n of cluster.body.nodes) assert.equal(n.address.address, n.address.hostName);
  assert.equal((await call("GET", `${BB}/admin/cluster`, { headers: basic("alice", "second-pass-2") })).status, 401);
});
