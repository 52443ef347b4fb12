// The audit log (seed 002) under workerd: writes and failed sign-ins become events written in the
// change's own D1 batch (Server-Timing says so, and a write costs no extra round trip), read back
// through Atlassian's auditing REST API (filters, both kinds of paging, 400s, SYS_ADMIN only), and
// pruned by the cron past the retention period.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, client, roundTrips } from "../support/worker.mjs";

const EVENTS = "/rest/auditing/1.0/events";
const RETENTION = "/rest/auditing/1.0/configuration/retention";
const DAY = 86_400_000;
let worker, call, admin, adminToken;
const started = Date.now();

const old = (days, action) =>
  `INSERT INTO audit_events (at, author_name, author_type, category, action, method, path, outcome, objects, object_keys, changed) ` +
  `VALUES (${started - days * DAY}, 'seed', 'user', 'Projects', '${action}', 'POST', '/old', 'SUCCESS', '[]', '', '[]');`;

before(async () => {
  worker = await startWorker({ seedSql: old(100, "SeededHundredDays") + old(10, "SeededTenDays") });
  call = client(worker.url);
  admin = worker.adminToken;
  adminToken = { token: admin };
});
after(() => worker?.stop());

const events = async (query = "") => {
  const r = await call("GET", `${EVENTS}${query ? `?${query}` : ""}`, adminToken);
  assert.equal(r.status, 200, r.text);
  return r.body;
};
const attr = (e, name) => e.extraAttributes.find((a) => a.name === name)?.value;
const timing = (r) => r.headers.get("server-timing") ?? "";

test("writes are events in their own batch; refusals and failed sign-ins are failures", async () => {
  await call("GET", "/api/v4/user", adminToken); // the caller is remembered: a write is then its own batch
  const created = await call("POST", "/rest/api/1.0/projects", { ...adminToken, json: { key: "AUD", name: "Audited" } });
  assert.equal(created.status, 201, created.text);
  assert.match(timing(created), /audit;desc="in batch"/);
  // With the caller and the settings remembered, a new project is one batch: the least any write
  // costs. Its event rides in it.
  const trips = roundTrips(created);
  console.log(`project creation with its audit event: ${trips} D1 round trip(s)`);
  assert.equal(trips, 1);
  assert.equal((await call("POST", "/rest/api/1.0/admin/users?name=alice&password=alice-password-1", adminToken)).status, 204);
  const t = await call("PUT", "/rest/access-tokens/1.0/users/alice", { ...adminToken, json: { name: "e2e" } });
  assert.equal(t.status, 200, t.text);
  const alice = t.body.token;
  const refused = await call("POST", "/rest/api/1.0/projects", { token: alice, json: { key: "NOPE", name: "Nope" }, headers: { "X-Forwarded-For": "203.0.113.9, 10.0.0.1" } });
  assert.equal(refused.status, 401);
  assert.match(timing(refused), /audit;desc="own write"/);
  const wrong = await call("GET", "/rest/api/1.0/users", { headers: { Authorization: `Basic ${Buffer.from("alice:not-her-password").toString("base64")}` } });
  assert.equal(wrong.status, 401);

  const page = await events("limit=10");
  const [signIn, refusal, token, user, project] = page.entities;
  assert.equal(signIn.type.action, "AuthenticationFailed");
  assert.equal(signIn.type.category, "Authentication");
  assert.equal(signIn.author.type, "anonymous");
  assert.deepEqual(signIn.affectedObjects.map((o) => [o.type, o.id]), [["USER", "alice"]]);
  assert.equal(attr(signIn, "status"), "401");
  assert.equal(refusal.author.name, "alice");
  assert.equal(refusal.type.action, "CreateProject");
  assert.equal(attr(refusal, "outcome"), "FAILURE");
  assert.equal(attr(refusal, "status"), "401");
  // workerd sets CF-Connecting-IP to the connecting address, as Cloudflare does; it wins over the
  // X-Forwarded-For a client sends (which anyone can forge). The fallback is a core unit test.
  assert.equal(refusal.source, "127.0.0.1");
  assert.equal(token.type.action, "CreateToken");
  assert.equal(user.type.category, "Users");
  assert.deepEqual(user.affectedObjects.map((o) => [o.type, o.id]), [["USER", "alice"]]);
  assert.equal(project.author.name, "admin");
  assert.equal(project.author.type, "user");
  assert.equal(attr(project, "outcome"), "SUCCESS");
  assert.equal(attr(project, "httpMethod"), "POST");
  assert.equal(attr(project, "path"), "/rest/api/1.0/projects");
  assert.ok(project.changedValues.some((c) => c.key === "key" && c.to === "AUD"));
  assert.equal(project.method, "REST");
  assert.equal(project.system, worker.url);
  assert.match(project.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  const text = JSON.stringify(page);
  for (const secret of ["alice-password-1", "not-her-password", alice, admin]) assert.ok(!text.includes(secret), "no secret in the log");
});

test("filters: from/to, actions, affectedObject, userIds, search", async () => {
  await call("POST", "/rest/api/1.0/projects", { ...adminToken, json: { key: "FLT", name: "Filtered" } });
  await call("PUT", "/rest/api/1.0/projects/FLT/permissions/users?name=alice&permission=PROJECT_READ", adminToken);
  const all = await events("limit=1000");
  const newest = all.entities[0];
  assert.equal(newest.type.action, "GrantProject");
  const at = newest.timestamp;
  const exact = await events(`from=${encodeURIComponent(at)}&to=${encodeURIComponent(at)}`);
  assert.ok(exact.entities.length >= 1 && exact.entities.every((e) => e.timestamp === at));
  assert.equal((await events("to=2000-01-01T00:00:00.000Z")).entities.length, 0);
  const grants = await events("actions=GrantProject,RevokeProject");
  assert.deepEqual(grants.entities.map((e) => e.type.action), ["GrantProject"]);
  const flt = await events("affectedObject=PROJECT,FLT");
  assert.deepEqual(flt.entities.map((e) => e.type.action), ["GrantProject"]);
  const alice = await events("affectedObject=USER,alice;PROJECT,NOPE");
  assert.ok(alice.entities.length >= 3, JSON.stringify(alice.entities.map((e) => e.type.action)));
  assert.ok(alice.entities.every((e) => e.affectedObjects.some((o) => o.type === "USER" && o.id === "alice")));
  const adminId = newest.author.id;
  const mine = await events(`userIds=${adminId}&limit=1000`);
  assert.ok(mine.entities.length > 0 && mine.entities.every((e) => e.author.id === adminId));
  assert.equal((await events("userIds=999999")).entities.length, 0);
  assert.ok((await events("search=filtered")).entities.some((e) => e.type.action === "CreateProject"));
  assert.deepEqual((await events("categories=Permissions")).entities.map((e) => e.type.action), ["GrantProject"]);
});

test("paging by nextPageCursor and by offset walk the same events, newest first", async () => {
  const everything = (await events("limit=1000")).entities;
  assert.ok(everything.length >= 8, `${everything.length} events`);
  const viaCursor = [];
  let page = await events("limit=3");
  for (;;) {
    viaCursor.push(...page.entities);
    assert.equal(page.pagingInfo.size, page.entities.length);
    if (page.pagingInfo.lastPage) {
      assert.equal(page.pagingInfo.nextPageOffset, null);
      assert.equal(page.pagingInfo.nextPageCursor, undefined);
      break;
    }
    assert.match(page.pagingInfo.nextPageCursor, /^\d+,\d+$/);
    const link = new URL(page.pagingInfo.nextPageLink);
    assert.equal(link.searchParams.get("pageCursor"), page.pagingInfo.nextPageCursor);
    page = await events(`limit=3&pageCursor=${encodeURIComponent(page.pagingInfo.nextPageCursor)}`);
  }
  const viaOffset = [];
  for (let offset = 0; ; ) {
    const p = await events(`limit=4&offset=${offset}`);
    viaOffset.push(...p.entities);
    if (p.pagingInfo.lastPage) break;
    offset = p.pagingInfo.nextPageOffset;
  }
  const key = (e) => `${e.timestamp} ${e.type.action} ${attr(e, "path")}`;
  assert.deepEqual(viaCursor.map(key), everything.map(key));
  assert.deepEqual(viaOffset.map(key), everything.map(key));
  const times = everything.map((e) => Date.parse(e.timestamp));
  assert.deepEqual([...times].sort((a, b) => b - a), times, "newest first");
});

test("bad parameters are 400s naming the parameter; only a SYS_ADMIN reads the log", async () => {
  for (const [query, context] of [
    ["from=yesterday", "from"],
    ["to=2026-02-30T00:00:00Z", "to"],
    ["limit=0", "limit"],
    ["offset=-1", "offset"],
    ["pageCursor=abc", "pageCursor"],
    ["userIds=alice", "userIds"],
    ["affectedObject=PROJECT", "affectedObject"],
  ]) {
    const r = await call("GET", `${EVENTS}?${query}`, adminToken);
    assert.equal(r.status, 400, query);
    assert.equal(r.body.errors[0].context, context, query);
    assert.ok(r.body.errors[0].message);
  }
  assert.equal((await call("PUT", "/rest/api/1.0/admin/permissions/users?name=alice&permission=ADMIN", adminToken)).status, 204);
  const t = await call("PUT", "/rest/access-tokens/1.0/users/alice", { ...adminToken, json: { name: "e2e-admin" } });
  for (const [method, path] of [["GET", EVENTS], ["GET", RETENTION], ["PUT", RETENTION]]) {
    const r = await call(method, path, { token: t.body.token, json: method === "PUT" ? { period: { days: 1 } } : undefined });
    assert.equal(r.status, 401, `${method} ${path} as ADMIN`);
  }
  assert.equal((await call("GET", EVENTS)).status, 401, "anonymous");
});

test("retention: a setting (90 days unless set) the cron enforces", async () => {
  const r = await call("GET", RETENTION, adminToken);
  assert.deepEqual(r.body, { period: { years: 0, months: 0, days: 90 } });
  const seeded = (await events("actions=SeededHundredDays,SeededTenDays")).entities;
  assert.deepEqual(seeded.map((e) => e.type.action), ["SeededTenDays", "SeededHundredDays"]);
  const cron = () => fetch(`${worker.url}/__scheduled?cron=*+*+*+*+*`);
  assert.equal((await cron()).status, 200);
  assert.deepEqual((await events("actions=SeededHundredDays,SeededTenDays")).entities.map((e) => e.type.action), ["SeededTenDays"]);
  const put = await call("PUT", RETENTION, { ...adminToken, json: { period: { days: 5 } } });
  assert.equal(put.status, 200, put.text);
  assert.deepEqual(put.body, { period: { years: 0, months: 0, days: 5 } });
  assert.deepEqual((await call("GET", RETENTION, adminToken)).body, put.body);
  assert.equal((await cron()).status, 200);
  assert.equal((await events("actions=SeededHundredDays,SeededTenDays")).entities.length, 0);
  const puts = (await events("actions=PutAuditRetention")).entities;
  assert.deepEqual(puts.map((e) => [e.author.name, attr(e, "outcome")]), [["admin", "SUCCESS"], ["alice", "FAILURE"]], "recent events stay");
  for (const bad of [{}, { period: { days: 0 } }, { period: { days: -3 } }, { period: "90d" }]) {
    const r = await call("PUT", RETENTION, { ...adminToken, json: bad });
    assert.equal(r.status, 400, JSON.stringify(bad));
    assert.equal(r.body.errors[0].context, "period");
  }
});

test("the retention-config-review notification is dismissed for the signed-in user", async () => {
  const path = "/rest/audit/1.0/notification-settings/retention-config-review";
  assert.equal((await call("DELETE", path)).status, 401);
  assert.equal((await call("DELETE", path, adminToken)).status, 204);
  const settings = await call("GET", "/rest/api/1.0/users/admin/settings", adminToken);
  assert.equal(settings.body["audit.retentionConfigReview.dismissed"], true);
  const e = (await events("actions=DismissRetentionReview")).entities;
  assert.deepEqual(e.map((x) => [x.author.name, attr(x, "outcome")]), [["admin", "SUCCESS"], ["Anonymous", "FAILURE"]]);
});
