// The farm-node protocol over HTTP against the Worker and a real local D1: leases are exclusive,
// results idempotent, expired leases return their jobs, and the mirror's status follows.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, client } from "../support/worker.mjs";

let worker, call, admin, node, node2, base, repoId;
const API = "/rest/mirrorfarm/1.0";

before(async () => {
  worker = await startWorker({ retryBaseMs: 0 });
  call = client(worker.url);
  admin = worker.adminToken;
  assert.equal((await call("POST", "/rest/api/1.0/projects", { token: admin, json: { key: "NP", name: "Nodes" } })).status, 201);
  repoId = (await call("POST", "/rest/api/1.0/projects/NP/repos", { token: admin, json: { name: "r" } })).body.id;
  base = `/api/v4/projects/${repoId}/remote_mirrors`;
  const n1 = await call("POST", `${API}/nodes`, { token: admin, json: { name: "n1" } });
  assert.equal(n1.status, 201, n1.text);
  node = n1.body.token;
  node2 = (await call("POST", `${API}/nodes`, { token: admin, json: { name: "n2" } })).body.token;
  assert.equal((await call("POST", `${API}/nodes`, { token: admin, json: { name: "n1" } })).status, 409);
});
after(() => worker?.stop());

const asNode = (token, method, path, json) => call(method, path, { headers: { Authorization: `Bearer ${token}` }, json });
const lease = (token, leaseSeconds = 60) => asNode(token, "POST", `${API}/jobs/lease`, { leaseSeconds });
const report = (token, job, outcome, message = "") =>
  asNode(token, "POST", `${API}/jobs/${job.id}/result`, { leaseId: job.leaseId, outcome, message });
const mirror = async (id) => (await call("GET", `${base}/${id}`, { token: admin })).body;

test("a lease is exclusive, carries the credentials, and a pushed result finishes the mirror", async () => {
  const m = (await call("POST", base, { token: admin, json: { url: "https://bot:np-s3cret@example.com/a.git", enabled: true } })).body;
  const job = await lease(node);
  assert.equal(job.status, 200, job.text);
  assert.equal(job.body.remoteMirror.url, "https://bot:np-s3cret@example.com/a.git");
  assert.equal((await lease(node2)).status, 204, "the only job is leased");
  assert.equal((await mirror(m.id)).update_status, "started");
  const renewed = await asNode(node, "POST", `${API}/jobs/${job.body.id}/renew`, { leaseId: job.body.leaseId, leaseSeconds: 120 });
  assert.equal(renewed.status, 200, renewed.text);
  assert.equal((await report(node2, job.body, "pushed")).status, 409, "another node cannot report");
  const done = await report(node, job.body, "pushed");
  assert.deepEqual([done.status, done.body.updateStatus, done.body.job.state], [200, "finished", "DONE"], done.text);
  const after1 = await mirror(m.id);
  assert.ok(after1.last_successful_update_at && after1.last_error === null);
  assert.equal((await report(node, job.body, "error", "dup")).status, 200, "a repeated report is accepted");
  assert.deepEqual(await mirror(m.id), after1, "and changes nothing");
  assert.equal((await call("DELETE", `${base}/${m.id}`, { token: admin })).status, 204);
});

test("errors retry three times then fail; the error is scrubbed", async () => {
  const m = (await call("POST", base, { token: admin, json: { url: "https://example.com/b.git", enabled: true } })).body;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const job = await lease(node);
    assert.deepEqual([job.status, job.body?.attempt], [200, attempt], job.text);
    const r = await report(node, job.body, "error", "fatal: unable to access 'https://bot:leaky@example.com/b.git/': 503");
    assert.equal(r.body.updateStatus, attempt < 3 ? "to_retry" : "failed", r.text);
  }
  assert.equal((await lease(node)).status, 204);
  const failed = await mirror(m.id);
  assert.equal(failed.last_error, "fatal: unable to access 'https://*****:*****@example.com/b.git/': 503");
  assert.equal((await call("DELETE", `${base}/${m.id}`, { token: admin })).status, 204);
});

test("an expired lease returns the job; the old lease is dead; release does not use up a try", async () => {
  const m = (await call("POST", base, { token: admin, json: { url: "https://example.com/c.git", enabled: true } })).body;
  const first = (await lease(node, 5)).body; // the shortest lease a node may ask for
  await new Promise((r) => setTimeout(r, 5200));
  const second = await lease(node2);
  assert.deepEqual([second.status, second.body?.attempt], [200, 2], second.text);
  const status = await mirror(m.id);
  assert.equal(status.update_status, "started", "leased again by node 2");
  assert.equal((await report(node, first, "pushed")).status, 409, "the expired lease can no longer report");
  const rel = await asNode(node2, "POST", `${API}/jobs/${second.body.id}/release`, { leaseId: second.body.leaseId });
  assert.equal(rel.status, 204, rel.text);
  assert.equal((await mirror(m.id)).update_status, "to_retry");
  const third = await lease(node);
  assert.deepEqual([third.status, third.body?.attempt], [200, 2], "the released try was not counted");
  assert.equal((await report(node, third.body, "pushed")).body.updateStatus, "finished");
  const jobs = (await call("GET", `${API}/repos/${repoId}/jobs`, { token: admin })).body.values;
  assert.ok(jobs.every((j) => j.state !== "LEASED"));
  assert.ok(!JSON.stringify(jobs).includes("leaseId"), "lease ids are not shown to clients");
});

test("unauthenticated and wrongly authenticated nodes are refused", async () => {
  assert.equal((await call("POST", `${API}/jobs/lease`)).status, 401);
  assert.equal((await asNode("mfn_" + "0".repeat(40), "POST", `${API}/jobs/lease`)).status, 401);
  assert.equal((await asNode(admin, "POST", `${API}/jobs/lease`)).status, 401, "a user token is not a node token");
  assert.equal((await asNode(node, "GET", "/api/v4/user")).status, 401, "a node token is not a user token");
  const listed = await call("GET", `${API}/nodes`, { token: admin });
  assert.deepEqual(listed.body.values.map((n) => n.name), ["n1", "n2"]);
  assert.ok(!listed.text.includes(node));
  assert.ok(!worker.logs().includes("np-s3cret") && !worker.logs().includes(node));
});
