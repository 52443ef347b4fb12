// The permission matrix, drawn from the route table as the served OpenAPI document declares it
// (`x-mirrorfarm-access`): every operation is called as eleven kinds of caller (one of them
// holding its rights only through a group), and each answer is
// checked against what the declaration means. Bitbucket-style paths answer 401 to a signed-in
// caller who lacks the permission, GitLab paths 403; a caller who may not see the repository or
// project gets 404. Calls that would destroy the fixture are made harmless (no name, an unknown
// mirror or token id) or, for deleting a repository, use a victim repository made again after.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, client } from "../support/worker.mjs";

const API = "/rest/mirrorfarm/1.0";
let worker, call, admin, doc;
const fixture = {};
const tokens = {};
const LEVEL = { READ: 1, WRITE: 2, ADMIN: 3 };
// Each caller's level on repository PM/r (and PM/victim) and on project PM; global role.
const CALLERS = {
  anonymous: { signedIn: false },
  noGrants: { signedIn: true, repo: 0, project: 0 },
  repoRead: { signedIn: true, repo: 1, project: 0 },
  repoWrite: { signedIn: true, repo: 2, project: 0 },
  // REPO_WRITE on PM/r and PM/victim through group `matrix-writers` only: no grant of its own.
  groupWrite: { signedIn: true, repo: 2, project: 0 },
  repoAdmin: { signedIn: true, repo: 3, project: 0 },
  projectAdmin: { signedIn: true, repo: 3, project: 3 },
  globalAdmin: { signedIn: true, repo: 3, project: 3, admin: true },
  sysAdmin: { signedIn: true, repo: 3, project: 3, admin: true, sysAdmin: true },
  node: { node: true },
  statusToken: { signedIn: true, repo: 1, project: 0, statusOnly: true },
};

// Every non-GET call made while `journal` is set, with who made it and its status, so the audit
// log can be checked against it afterwards; `machine` marks a call to a route the log leaves out
// (the farm-node protocol and signed webhook deliveries).
let journal = null;
let machine = false;
const authorOf = {};
function tracked(rawCall) {
  return async (method, path, opts = {}) => {
    const r = await rawCall(method, path, opts);
    if (journal && method !== "GET" && !machine) {
      const token = opts.token ?? opts.headers?.["PRIVATE-TOKEN"] ?? opts.headers?.Authorization?.replace(/^Bearer /, "");
      // The path as sent (fetch percent-encodes what the matrix leaves literal, e.g. `{upstreamId}`).
      journal.push({ method, path: new URL(path, "http://x").pathname, author: token ? authorOf[token] : "Anonymous", status: r.status });
    }
    return r;
  };
}

const as = (who) => (method, path, json) => {
  // Bitbucket's XSRF header, as its clients send it with multipart writes.
  const headers = { "X-Atlassian-Token": "no-check" };
  if (who === "node") headers.Authorization = `Bearer ${tokens.node}`;
  else if (tokens[who]) headers["PRIVATE-TOKEN"] = tokens[who];
  return call(method, path, { headers, json });
};

async function grantRepo(slug, name, permission) {
  const r = await call("PUT", `/rest/api/1.0/projects/PM/repos/${slug}/permissions/users?name=${name}&permission=${permission}`, { token: admin });
  assert.equal(r.status, 204, r.text);
}

async function grantGroup(slug, group, permission) {
  const r = await call("PUT", `/rest/api/1.0/projects/PM/repos/${slug}/permissions/groups?name=${group}&permission=${permission}`, { token: admin });
  assert.equal(r.status, 204, r.text);
}

async function makeVictim() {
  const r = await call("POST", "/rest/api/1.0/projects/PM/repos", { token: admin, json: { name: "victim" } });
  assert.equal(r.status, 201, r.text);
  for (const [name, permission] of [["repoRead", "REPO_READ"], ["repoWrite", "REPO_WRITE"], ["repoAdmin", "REPO_ADMIN"]]) {
    await grantRepo("victim", name.toLowerCase(), permission);
  }
  await grantGroup("victim", "matrix-writers", "REPO_WRITE");
  // The status token's user is repoRead: same grants.
}

before(async () => {
  worker = await startWorker();
  call = tracked(client(worker.url));
  admin = worker.adminToken;
  tokens.sysAdmin = admin;
  assert.equal((await call("POST", "/rest/api/1.0/projects", { token: admin, json: { key: "PM", name: "Matrix" } })).status, 201);
  const repo = await call("POST", "/rest/api/1.0/projects/PM/repos", { token: admin, json: { name: "r" } });
  fixture.repoId = repo.body.id;
  const mirror = await call("POST", `/api/v4/projects/${fixture.repoId}/remote_mirrors`, { token: admin, json: { url: "https://example.com/m.git" } });
  fixture.mirrorId = mirror.body.id;
  for (const name of ["noGrants", "repoRead", "repoWrite", "groupWrite", "repoAdmin", "projectAdmin", "globalAdmin", "bystander"]) {
    const slug = name.toLowerCase();
    assert.equal((await call("POST", `/rest/api/1.0/admin/users?name=${slug}`, { token: admin })).status, 204);
    if (name === "bystander") continue;
    const t = await call("PUT", `/rest/access-tokens/1.0/users/${slug}`, { token: admin, json: { name: "matrix" } });
    assert.equal(t.status, 200, t.text);
    tokens[name] = t.body.token;
  }
  const status = await call("PUT", "/rest/access-tokens/1.0/users/reporead", { token: admin, json: { name: "widget", permissions: ["STATUS_READ"] } });
  tokens.statusToken = status.body.token;
  await grantRepo("r", "reporead", "REPO_READ");
  await grantRepo("r", "repowrite", "REPO_WRITE");
  await grantRepo("r", "repoadmin", "REPO_ADMIN");
  assert.equal((await call("POST", "/rest/api/1.0/admin/groups?name=matrix-writers", { token: admin })).status, 200);
  const join = await call("POST", "/rest/api/1.0/admin/groups/add-users", { token: admin, json: { group: "matrix-writers", users: ["groupwrite"] } });
  assert.equal(join.status, 200, join.text);
  await grantGroup("r", "matrix-writers", "REPO_WRITE");
  assert.equal((await call("PUT", "/rest/api/1.0/projects/PM/permissions/users?name=projectadmin&permission=PROJECT_ADMIN", { token: admin })).status, 204);
  assert.equal((await call("PUT", "/rest/api/1.0/admin/permissions/users?name=globaladmin&permission=ADMIN", { token: admin })).status, 204);
  tokens.node = (await call("POST", `${API}/nodes`, { token: admin, json: { name: "matrix-node" } })).body.token;
  await call("POST", `/api/v4/projects/${fixture.repoId}/remote_mirrors/${fixture.mirrorId}/sync`, { token: admin });
  await makeVictim();
  doc = (await call("GET", `${API}/openapi.json`)).body;
  Object.assign(authorOf, { [admin]: "admin", [tokens.node]: "matrix-node", [tokens.statusToken]: "reporead" });
  for (const name of ["noGrants", "repoRead", "repoWrite", "groupWrite", "repoAdmin", "projectAdmin", "globalAdmin"]) authorOf[tokens[name]] = name.toLowerCase();
});

/** Every audit event, newest first, paged by `nextPageCursor`. */
async function auditLog() {
  const all = [];
  let query = "limit=1000";
  for (;;) {
    const r = await call("GET", `/rest/auditing/1.0/events?${query}`, { token: admin });
    assert.equal(r.status, 200, r.text);
    all.push(...r.body.entities);
    if (r.body.pagingInfo.lastPage) return all;
    query = `limit=1000&pageCursor=${encodeURIComponent(r.body.pagingInfo.nextPageCursor)}`;
  }
}
after(() => worker?.stop());

/** What a declared access means for a caller: "allow", "401", "403" or "404" (hidden). */
function expected(access, who, gitlab) {
  const c = CALLERS[who];
  const deny = gitlab ? "403" : "401";
  if (c.statusOnly && access !== "STATUS") return deny;
  if (access === "ANYONE" || access === "WEBHOOK_SIGNER") return "allow";
  if (c.node) return access === "NODE" || access.startsWith("NODE_OR_REPO_") ? "allow" : "401";
  if (access === "NODE") return "401";
  if (!c.signedIn) return "401"; // the fixture is private: nothing is readable anonymously
  if (access === "USER") return "allow";
  if (access === "ADMIN" || access === "SELF_OR_ADMIN") return c.admin ? "allow" : deny; // SELF: a bystander's slug
  if (access === "SYS_ADMIN") return c.sysAdmin ? "allow" : deny;
  const [, scope, level] = /^(?:NODE_OR_)?(REPO|PROJECT|STATUS)_?(READ|WRITE|ADMIN)?$/.exec(access) ?? [];
  assert.ok(scope, `unknown access ${access}`);
  const need = LEVEL[level ?? "READ"];
  const have = scope === "PROJECT" ? (c.project || (c.repo ? 1 : 0)) : c.repo;
  if (!have) return "404";
  return have >= need ? "allow" : deny;
}

const HIDDEN = ["404 Project Not Found", "Repository does not exist.", "Repository PM/r does not exist.", "Repository PM/victim does not exist.", "Project PM does not exist."];

function classify(r) {
  if (r.status === 401 || r.status === 403) return String(r.status);
  const message = r.body?.message ?? r.body?.errors?.[0]?.message;
  if (r.status === 404 && HIDDEN.includes(message)) return "404";
  return "allow";
}

/** A concrete path for an operation; destructive ones aimed where they cannot destroy the fixture. */
function concrete(path, method) {
  const destructive = method === "delete";
  return path
    .replace("/latest/", "/1.0/")
    .replace("{id}", String(fixture.repoId))
    .replace("{mirror_id}", destructive ? "999999" : String(fixture.mirrorId))
    .replace("{projectKey}", "PM")
    .replace("{repositorySlug}", destructive && path.endsWith("{repositorySlug}") ? "victim" : "r")
    .replace("{repositoryId}", String(fixture.repoId))
    .replace("{userSlug}", "bystander")
    .replace("{tokenId}", "000000000000")
    .replace("{keyId}", "999999")
    .replace("{key_id}", "999999")
    .replace("{jobId}", "1")
    .replace("{labelName}", "nolabel")
    .replace("{loggerName}", "mirrorfarm.matrix")
    .replace("{levelName}", "INFO")
    .replace("{scriptId}", "999999")
    .replace("{nodeId}", "999999")
    .replace("{zipId}", "999999")
    .replace("{name}", destructive ? "nope" : "main");
}

test("every route answers every kind of caller as the route table declares", async () => {
  const operations = Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, op]) => ({ path, method, access: op["x-mirrorfarm-access"] })),
  );
  assert.ok(operations.length >= 49);
  const mismatches = [];
  let calls = 0;
  const logged = (await auditLog()).length;
  journal = [];
  for (const who of Object.keys(CALLERS)) {
    for (const { path, method, access } of operations) {
      const url = concrete(path, method);
      // A delivery is judged by its signature, not its caller: with no secret set, everyone
      // gets the same 404 (signatures are tested in runner.test.mjs).
      if (access === "WEBHOOK_SIGNER") await call("DELETE", url, { token: admin });
      machine = access === "NODE" || access === "WEBHOOK_SIGNER";
      const r = await as(who)(method.toUpperCase(), url, method === "get" || method === "delete" ? undefined : {});
      machine = false;
      calls++;
      assert.ok(r.status < 500, `${who} ${method} ${url}: ${r.status} ${r.text}`);
      const want = expected(access, who, path.startsWith("/api/"));
      const got = classify(r);
      if (want !== got) mismatches.push(`${who} ${method.toUpperCase()} ${url} (${access}): expected ${want}, got ${r.status} ${r.text.slice(0, 120)}`);
      if (method === "delete" && path.endsWith("{repositorySlug}") && r.status === 202) await makeVictim();
    }
  }
  console.log(`permission matrix: ${operations.length} operations × ${Object.keys(CALLERS).length} callers = ${calls} calls`);
  assert.deepEqual(mismatches, []);

  // The audit log holds one event for each of the matrix's writes, in order, with its author and
  // outcome (SUCCESS for 2xx, FAILURE otherwise).
  const made = journal;
  journal = null;
  const log = await auditLog();
  const ours = log.slice(0, log.length - logged).reverse();
  const attr = (e, name) => e.extraAttributes.find((a) => a.name === name)?.value;
  const seen = ours.map((e) => `${attr(e, "httpMethod")} ${attr(e, "path")} by ${e.author.name}: ${attr(e, "outcome")}`);
  const want = made.map((c) => `${c.method} ${c.path} by ${c.author}: ${c.status < 300 ? "SUCCESS" : "FAILURE"}`);
  console.log(`audit log: ${ours.length} events for the matrix's ${made.length} audited writes`);
  assert.deepEqual(seen, want);
  for (const [e, c] of ours.map((e, i) => [e, made[i]])) {
    if (c.status >= 300) assert.equal(attr(e, "status"), String(c.status), `${c.method} ${c.path}`);
  }
});
