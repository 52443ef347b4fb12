// Every endpoint of the foundation, and each of its error cases, over HTTP against the built
// Worker under workerd with a fresh local D1. Nothing here is mocked.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { startWorker, client } from "../support/worker.mjs";

let worker, call, admin;
const SECRET = "pa55-w0rd-e2e";
const seen = []; // every response body, scanned for secrets at the end

async function as(token, method, url, opts = {}) {
  const r = await call(method, url, { token, ...opts });
  seen.push(r.text);
  return r;
}
const asAdmin = (method, url, opts) => as(admin, method, url, opts);

before(async () => {
  // 127.0.0.1 is allow-listed, as `npm start` does for local mirrors.
  worker = await startWorker({ allowedHosts: "127.0.0.1" });
  call = client(worker.url);
  admin = worker.adminToken;
  assert.equal((await asAdmin("POST", "/rest/api/1.0/projects", { json: { key: "MF", name: "Mirror Farm" } })).status, 201);
  const repo = await asAdmin("POST", "/rest/api/1.0/projects/MF/repos", { json: { name: "Main Repo", defaultBranch: "trunk" } });
  assert.equal(repo.status, 201, repo.text);
});
after(() => worker?.stop());

test("credentials: PRIVATE-TOKEN, Bearer and Basic user:token; bad or missing → 401", async () => {
  const ok = (r) => assert.equal(r.status, 200, r.text);
  ok(await call("GET", "/api/v4/user", { headers: { "PRIVATE-TOKEN": admin } }));
  ok(await call("GET", "/api/v4/user", { headers: { Authorization: `Bearer ${admin}` } }));
  const basic = Buffer.from(`admin:${admin}`).toString("base64");
  ok(await call("GET", "/api/v4/user", { headers: { Authorization: `Basic ${basic}` } }));
  const wrongUser = Buffer.from(`somebody:${admin}`).toString("base64");
  assert.equal((await call("GET", "/api/v4/user", { headers: { Authorization: `Basic ${wrongUser}` } })).status, 401);
  const bad = await call("GET", "/api/v4/projects/1/remote_mirrors", { token: admin.slice(0, -1) + "x" });
  assert.deepEqual([bad.status, bad.body], [401, { message: "401 Unauthorized" }]);
  const none = await call("GET", "/rest/api/1.0/projects/MF/repos/main-repo");
  assert.equal(none.status, 401);
  assert.equal(none.body.errors[0].message.length > 0, true);
});

test("registry: projects and repositories in Bitbucket shapes, with paging and errors", async () => {
  const repo = await asAdmin("GET", "/rest/api/latest/projects/mf/repos/main-repo/");
  assert.equal(repo.status, 200);
  assert.equal(repo.body.slug, "main-repo");
  assert.equal(repo.body.defaultBranch, "trunk");
  assert.equal(repo.body.project.key, "MF");
  assert.equal(repo.body.upstreamUrl, null);
  const up = await asAdmin("POST", "/rest/api/1.0/projects/MF/repos", {
    json: { name: "upstreamed", public: true, upstreamUrl: `https://puller:${SECRET}@example.com/u.git` },
  });
  assert.equal(up.status, 201, up.text);
  assert.equal(up.body.upstreamUrl, "https://*****:*****@example.com/u.git");
  assert.equal(up.body.public, true);
  const page = await asAdmin("GET", "/rest/api/1.0/projects/MF/repos?limit=1");
  assert.deepEqual([page.body.size, page.body.isLastPage, page.body.nextPageStart], [1, false, 1]);
  const rest = await asAdmin("GET", "/rest/api/1.0/projects/MF/repos?start=1&limit=5");
  assert.deepEqual([rest.body.size, rest.body.isLastPage], [1, true]);
  assert.equal((await asAdmin("GET", "/rest/api/1.0/repos?name=upstream")).body.values[0].slug, "upstreamed");
  assert.equal((await asAdmin("GET", "/rest/api/1.0/projects")).body.values[0].key, "MF");
  // Anyone may read the public repository; nobody anonymous may read the private one.
  assert.equal((await call("GET", "/rest/api/1.0/projects/MF/repos/upstreamed")).status, 200);
  // Errors in Bitbucket's shape.
  const dup = await asAdmin("POST", "/rest/api/1.0/projects", { json: { key: "mf", name: "Other" } });
  assert.equal(dup.status, 409);
  assert.ok(Array.isArray(dup.body.errors) && "exceptionName" in dup.body.errors[0] && "context" in dup.body.errors[0]);
  const badKey = await asAdmin("POST", "/rest/api/1.0/projects", { json: { key: "9x", name: "x" } });
  assert.deepEqual([badKey.status, badKey.body.errors[0].context], [400, "key"]);
  const internal = await asAdmin("POST", "/rest/api/1.0/projects/MF/repos", { json: { name: "x", upstreamUrl: "http://10.1.1.1/x" } });
  assert.deepEqual([internal.status, internal.body.errors[0].context], [400, "upstreamUrl"]);
  assert.equal((await asAdmin("GET", "/rest/api/1.0/projects/NOPE")).status, 404);
  assert.equal((await asAdmin("GET", "/rest/api/1.0/projects/MF/repos/nope")).status, 404);
  // Delete: a project with repositories conflicts; an empty one goes.
  assert.equal((await asAdmin("POST", "/rest/api/1.0/projects", { json: { key: "TMP", name: "Temporary" } })).status, 201);
  assert.equal((await asAdmin("POST", "/rest/api/1.0/projects/TMP/repos", { json: { name: "gone" } })).status, 201);
  assert.equal((await asAdmin("DELETE", "/rest/api/1.0/projects/TMP")).status, 409);
  assert.equal((await asAdmin("DELETE", "/rest/api/1.0/projects/TMP/repos/gone")).status, 202);
  assert.equal((await asAdmin("DELETE", "/rest/api/1.0/projects/TMP")).status, 204);
  assert.equal((await asAdmin("GET", "/rest/api/1.0/projects/TMP")).status, 404);
});

test("identity: users, tokens and permissions decide access (404 hidden; too little: GitLab 403, Bitbucket 401)", async () => {
  assert.equal((await asAdmin("POST", "/rest/api/1.0/admin/users?name=dev&displayName=Dev%20One&emailAddress=dev%40example.org")).status, 204);
  assert.equal((await asAdmin("POST", "/rest/api/1.0/admin/users?name=dev")).status, 409);
  const user = await asAdmin("GET", "/rest/api/1.0/users/dev");
  assert.deepEqual([user.body.name, user.body.displayName, user.body.emailAddress], ["dev", "Dev One", "dev@example.org"], user.text);
  assert.equal((await asAdmin("GET", "/rest/api/1.0/users?filter=dev")).body.size, 1);
  const made = await asAdmin("PUT", "/rest/access-tokens/1.0/users/dev", { json: { name: "laptop" } });
  assert.equal(made.status, 200, made.text);
  const dev = made.body.token;
  assert.match(dev, /^mfp_[0-9a-f]{40}$/);
  const listed = await asAdmin("GET", "/rest/access-tokens/1.0/users/dev");
  assert.equal(listed.body.size, 1);
  assert.ok(!listed.text.includes(dev), "a token is shown only when created");

  const mirrors = "/api/v4/projects/MF%2Fmain-repo/remote_mirrors";
  assert.deepEqual((await as(dev, "GET", mirrors)).body, { message: "404 Project Not Found" });
  assert.equal((await asAdmin("PUT", "/rest/api/1.0/projects/MF/repos/main-repo/permissions/users?name=dev&permission=REPO_WRITE")).status, 204);
  const forbidden = await as(dev, "POST", mirrors, { json: { url: "https://example.com/x.git" } });
  assert.deepEqual([forbidden.status, forbidden.body], [403, { message: "403 Forbidden" }]);
  assert.equal((await as(dev, "GET", "/api/v4/projects/MF%2Fmain-repo")).status, 200);
  assert.equal((await asAdmin("PUT", "/rest/api/1.0/projects/MF/permissions/users?name=dev&permission=PROJECT_ADMIN")).status, 204);
  assert.equal((await as(dev, "GET", mirrors)).status, 200);
  // A read-only token of an admin-level user stays read-only.
  const ro = (await as(dev, "PUT", "/rest/access-tokens/1.0/users/dev", { json: { name: "ro", permissions: ["REPO_READ"] } })).body.token;
  assert.equal((await as(ro, "GET", mirrors)).status, 403);
  assert.equal((await as(ro, "GET", "/rest/api/1.0/projects/MF/repos/main-repo")).status, 200);
  // Grants are revocable; global roles need an admin; bad permission names are 400.
  assert.equal((await asAdmin("DELETE", "/rest/api/1.0/projects/MF/permissions/users?name=dev")).status, 204);
  assert.equal((await as(dev, "GET", mirrors)).status, 403);
  // Bitbucket answers a signed-in caller who lacks the permission 401, not 403.
  assert.equal((await as(dev, "PUT", "/rest/api/1.0/admin/permissions/users?name=dev&permission=ADMIN")).status, 401);
  assert.equal((await asAdmin("PUT", "/rest/api/1.0/admin/permissions/users?name=dev&permission=REPO_GOD")).status, 400);
  assert.equal((await asAdmin("PUT", "/rest/api/1.0/admin/permissions/users?name=dev&permission=ADMIN")).status, 204);
  assert.equal((await as(dev, "GET", mirrors)).status, 200);
  assert.equal((await asAdmin("DELETE", "/rest/api/1.0/admin/permissions/users?name=dev")).status, 204);
  // Token revocation and user deletion end access.
  const id = listed.body.values[0].id;
  assert.equal((await as(dev, "DELETE", `/rest/access-tokens/1.0/users/dev/${id}`)).status, 204);
  assert.equal((await as(dev, "GET", "/api/v4/user")).status, 401);
  assert.equal((await asAdmin("DELETE", "/rest/api/1.0/admin/users?name=dev")).body.name, "dev");
  assert.equal((await as(ro, "GET", "/api/v4/user")).status, 401);
});

test("remote mirrors: create (JSON and form), list with GitLab paging, get, update, sync, delete", async () => {
  const base = "/api/v4/projects/MF%2Fmain-repo/remote_mirrors";
  const repoId = (await asAdmin("GET", "/rest/api/1.0/projects/MF/repos/main-repo")).body.id;
  const created = await asAdmin("POST", base, { json: { url: `https://bot:${SECRET}@example.com/one.git`, keep_divergent_refs: true } });
  assert.equal(created.status, 201, created.text);
  assert.deepEqual(created.body, {
    enabled: false, id: created.body.id, last_error: null, last_successful_update_at: null, last_update_at: null,
    last_update_started_at: null, only_protected_branches: false, keep_divergent_refs: true, update_status: "none",
    url: "https://*****:*****@example.com/one.git", mirror_branch_regex: null, auth_method: "password", host_keys: [],
  });
  const form = await asAdmin("POST", `/api/v4/projects/${repoId}/remote_mirrors`, {
    form: { url: "git://127.0.0.1/local.git", enabled: "true", mirror_branch_regex: "^release/" },
  });
  assert.equal(form.status, 201, form.text);
  assert.deepEqual([form.body.enabled, form.body.mirror_branch_regex, form.body.url], [true, "^release/", "git://127.0.0.1/local.git"]);
  for (let i = 0; i < 3; i++) assert.equal((await asAdmin("POST", base, { json: { url: `https://example.com/n${i}.git` } })).status, 201);

  const p2 = await asAdmin("GET", `${base}?page=2&per_page=2`);
  assert.equal(p2.status, 200);
  assert.equal(p2.body.length, 2);
  assert.deepEqual(
    ["x-total", "x-total-pages", "x-page", "x-per-page", "x-next-page", "x-prev-page"].map((h) => p2.headers.get(h)),
    ["5", "3", "2", "2", "3", "1"],
  );
  const link = p2.headers.get("link");
  for (const rel of ["next", "prev", "first", "last"]) assert.match(link, new RegExp(`rel="${rel}"`));
  assert.match(link, /page=3&per_page=2>; rel="next"/);

  const one = `${base}/${created.body.id}`;
  assert.equal((await asAdmin("GET", one)).body.url, "https://*****:*****@example.com/one.git");
  const upd = await asAdmin("PUT", one, { json: { enabled: true, only_protected_branches: true } });
  assert.deepEqual([upd.status, upd.body.enabled, upd.body.only_protected_branches], [200, true, true]);
  const formUpd = await asAdmin("PUT", one, { form: { keep_divergent_refs: "false" } });
  assert.deepEqual([formUpd.status, formUpd.body.keep_divergent_refs, formUpd.body.enabled], [200, false, true]);
  // Sending back the masked URL keeps the credentials; a new URL resets the status.
  assert.equal((await asAdmin("PUT", one, { json: { url: "https://*****:*****@example.com/one.git" } })).status, 200);
  assert.equal((await asAdmin("POST", `${one}/sync`)).status, 204);
  const jobs = await asAdmin("GET", `/rest/mirrorfarm/1.0/repos/${repoId}/jobs`);
  const forOne = jobs.body.values.filter((j) => j.remoteMirrorId === created.body.id);
  assert.equal(forOne.length, 1, "enabling queued one sync and the manual sync joined it");
  assert.deepEqual([forOne[0].state, forOne[0].kind], ["QUEUED", "PUSH_MIRROR"]);
  assert.equal((await asAdmin("GET", `${one}/public_key`)).status, 404);
  assert.equal((await asAdmin("DELETE", one)).status, 204);
  assert.deepEqual((await asAdmin("GET", one)).body, { message: "404 Remote Mirror Not Found" });
  assert.equal((await asAdmin("GET", base)).headers.get("x-total"), "4");
});

test("remote mirrors: every bad input is refused in GitLab's shape and writes nothing", async () => {
  const base = "/api/v4/projects/MF%2Fmain-repo/remote_mirrors";
  const before = (await asAdmin("GET", base)).headers.get("x-total");
  const repoId = (await asAdmin("GET", "/rest/api/1.0/projects/MF/repos/main-repo")).body.id;
  const jobsBefore = (await asAdmin("GET", `/rest/mirrorfarm/1.0/repos/${repoId}/jobs`)).body.size;
  const cases = [
    [{ enabled: true }, 400, "missing url"],
    [{ url: "https://e.com/x", only_protected_branches: true, mirror_branch_regex: "^a" }, 400, "regex with protected-only"],
    [{ url: "https://e.com/x", mirror_branch_regex: "b".repeat(256) }, 400, "regex over 255 chars"],
    [{ url: "https://e.com/x", mirror_branch_regex: "(unclosed" }, 400, "invalid regex"],
    [{ url: "ftp://e.com/x" }, 400, "ftp scheme"],
    [{ url: "file:///etc/passwd" }, 400, "file scheme"],
    [{ url: "http://127.0.0.2/x" }, 400, "loopback (not allow-listed)"],
    [{ url: "http://localhost/x" }, 400, "localhost"],
    [{ url: "https://192.168.0.10/x" }, 400, "private"],
    [{ url: "https://169.254.169.254/x" }, 400, "link-local"],
    [{ url: "https://[::1]/x" }, 400, "IPv6 loopback"],
    [{ url: "https://e.com/x", enabled: "sometimes" }, 400, "non-boolean enabled"],
  ];
  for (const [json, status, what] of cases) {
    const r = await asAdmin("POST", base, { json });
    assert.equal(r.status, status, `${what}: ${r.text}`);
    assert.ok("message" in r.body, `${what}: GitLab error shape: ${r.text}`);
  }
  const url = await asAdmin("POST", base, { json: { url: "https://10.0.0.1/x" } });
  assert.deepEqual(Object.keys(url.body.message), ["url"], "the url field is named");
  assert.equal((await asAdmin("POST", base, { body: "{broken", headers: { "Content-Type": "application/json" } })).status, 400);
  assert.equal((await asAdmin("POST", base, { body: "url=%ff", headers: { "Content-Type": "application/x-www-form-urlencoded" } })).status, 400);
  assert.equal((await asAdmin("POST", base, { body: "<x/>", headers: { "Content-Type": "application/xml" } })).status, 415);
  const huge = await asAdmin("POST", base, { json: { url: "https://e.com/" + "a".repeat(70_000) } });
  assert.deepEqual([huge.status, huge.body], [413, { message: "413 Request Entity Too Large" }]);
  const update = await asAdmin("GET", base);
  const id = update.body[0].id;
  const badUpdate = await asAdmin("PUT", `${base}/${id}`, { json: { only_protected_branches: true, mirror_branch_regex: "x" } });
  assert.equal(badUpdate.status, 400);
  assert.deepEqual((await asAdmin("GET", `${base}/${id}`)).body, update.body[0], "a refused update changes nothing");
  assert.deepEqual((await asAdmin("GET", "/api/v4/projects/424242/remote_mirrors")).body, { message: "404 Project Not Found" });
  assert.equal((await asAdmin("GET", "/api/v4/projects/NOPE%2Fx/remote_mirrors")).status, 404);
  assert.equal((await asAdmin("GET", `${base}/999999`)).status, 404);
  assert.equal((await asAdmin("DELETE", `${base}/999999`)).status, 404);
  assert.equal((await asAdmin("POST", `${base}/999999/sync`)).status, 404);
  assert.equal((await asAdmin("PATCH", `${base}/${id}`)).status, 405);
  assert.equal((await call("POST", base, { json: { url: "https://e.com/x" } })).status, 401);
  assert.equal((await asAdmin("GET", base)).headers.get("x-total"), before, "no mirror was written");
  assert.equal((await asAdmin("GET", `/rest/mirrorfarm/1.0/repos/${repoId}/jobs`)).body.size, jobsBefore, "no job was written");
});

test("secrets: never in a response, the Worker log, or D1 in the clear", async () => {
  assert.ok(seen.length > 50);
  for (const text of seen) assert.ok(!text.includes(SECRET), `a response leaked the secret: ${text.slice(0, 200)}`);
  assert.ok(!worker.logs().includes(SECRET), "the Worker log holds the secret");
  assert.ok(!worker.logs().includes(admin), "the Worker log holds the admin token");
  // Scan the local D1's SQLite files: credentials are sealed, tokens hashed.
  const files = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const p = path.join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else files.push(p);
    }
  };
  walk(worker.stateDir);
  const sqlite = files.filter((f) => /\.sqlite(-wal)?$/.test(f));
  assert.ok(sqlite.length > 0, "found the D1 database files");
  for (const f of sqlite) {
    const bytes = readFileSync(f);
    assert.ok(!bytes.includes(SECRET), `${f} holds the mirror secret in the clear`);
    assert.ok(!bytes.includes(admin), `${f} holds the admin token in the clear`);
  }
  const all = Buffer.concat(sqlite.map((f) => readFileSync(f)));
  assert.ok(all.includes("example.com/one.git"), "the scan reads the rows it should (credential-free URL present)");
});
