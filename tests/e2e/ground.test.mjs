// The ground under the APIs, over HTTP against workerd and a real local D1: every response
// reports its D1 round trips, which stay within each route class's bound; concurrent writers
// lose nothing; lists cost the same wherever the page is.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, client, roundTrips } from "../support/worker.mjs";

const API = "/rest/mirrorfarm/1.0";
const MANY = 2000;
let worker, call, admin, repoId, node;

// 2,000 repositories in project BULK, made in the database before the Worker starts.
const seedSql =
  `INSERT INTO projects (key, name, public, created_at) VALUES ('BULK', 'Bulk', 0, 0);` +
  `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${MANY}) ` +
  `INSERT INTO repositories (project_id, slug, name, default_branch, hierarchy_id, created_at) ` +
  `SELECT (SELECT id FROM projects WHERE key = 'BULK'), printf('r%05d', i), printf('r%05d', i), 'main', printf('h%05d', i), 0 FROM n;`;

before(async () => {
  worker = await startWorker({ retryBaseMs: 0, pollIntervalMs: 0, seedSql });
  call = client(worker.url);
  admin = worker.adminToken;
  assert.equal((await call("POST", "/rest/api/1.0/projects", { token: admin, json: { key: "GR", name: "Ground" } })).status, 201);
  const repo = await call("POST", "/rest/api/1.0/projects/GR/repos", {
    token: admin,
    json: { name: "r", upstreamUrl: "https://example.com/upstream.git" },
  });
  assert.equal(repo.status, 201, repo.text);
  repoId = repo.body.id;
  node = (await call("POST", `${API}/nodes`, { token: admin, json: { name: "ground-node" } })).body.token;
});
after(() => worker?.stop());

const asNode = (method, path, json) => call(method, path, { headers: { Authorization: `Bearer ${node}` }, json });

test("every response reports its D1 round trips, within its route class's bound", async () => {
  const m = await call("POST", `/api/v4/projects/${repoId}/remote_mirrors`, {
    token: admin,
    json: { url: "https://example.com/target.git", enabled: true },
  });
  assert.equal(m.status, 201, m.text);
  // Warm: the caller is remembered, so authentication costs nothing more.
  await call("GET", "/api/v4/user", { token: admin });
  const bounds = [
    ["anonymous liveness", "GET", `${API}/health`, undefined, 0],
    ["the caller", "GET", "/api/v4/user", undefined, 0],
    ["a read: mirror list", "GET", `/api/v4/projects/${repoId}/remote_mirrors`, undefined, 1],
    ["a read: status", "GET", `${API}/repos/${repoId}/status`, undefined, 1],
    ["a read: repository", "GET", "/rest/api/1.0/projects/GR/repos/r", undefined, 1],
    ["a read: one mirror", "GET", `/api/v4/projects/${repoId}/remote_mirrors/${m.body.id}`, undefined, 1],
    ["a read: repository list", "GET", "/rest/api/1.0/repos?limit=5", undefined, 1],
    ["a read: project list", "GET", "/rest/api/1.0/projects", undefined, 1],
    ["a write: sync a mirror", "POST", `/api/v4/projects/${repoId}/remote_mirrors/${m.body.id}/sync`, undefined, 2],
    ["a write: webhook secret", "PUT", `${API}/repos/${repoId}/webhook`, undefined, 2],
    ["a write: repository syncs", "POST", `${API}/repos/${repoId}/sync`, undefined, 2],
    ["a write: new project", "POST", "/rest/api/1.0/projects", { key: "RT", name: "Round trips" }, 2],
  ];
  const seen = [];
  for (const [what, method, path, json, most] of bounds) {
    const r = await call(method, path, { token: admin, json });
    assert.ok(r.status < 300, `${what}: ${r.status} ${r.text}`);
    const trips = roundTrips(r);
    seen.push(`${what}: ${trips}`);
    assert.ok(trips <= most, `${what}: ${trips} round trips, at most ${most} expected`);
  }
  console.log(`round trips per route (warm caller): ${seen.join("; ")}`);
  // Cold: an unknown token is one lookup and the failed sign-in's audit event (nothing else wrote,
  // so it is a statement of its own), and an error also carries the header.
  const bad = await call("GET", "/api/v4/user", { token: "mfp_not_a_token_at_all_000" });
  assert.equal(bad.status, 401);
  assert.ok(roundTrips(bad) <= 2);
  assert.match(bad.headers.get("server-timing"), /audit;desc="own write"/);
});

test("the node protocol's round trips: an empty poll is one, a lease two, a report two, a report with the next lease three", async () => {
  const trips = {};
  const measure = async (what, r, most) => {
    assert.ok(r.status < 300, `${what}: ${r.status} ${r.text}`);
    trips[what] = roundTrips(r);
    assert.ok(trips[what] <= most, `${what}: ${trips[what]} round trips, at most ${most}`);
    return r;
  };
  await asNode("POST", `${API}/nodes/heartbeat`, {}); // the node is remembered from here on
  // Drain whatever earlier tests queued, so the next poll is empty.
  for (;;) {
    const job = await asNode("POST", `${API}/jobs/lease`, { leaseSeconds: 60 });
    if (job.status === 204) break;
    await asNode("POST", `${API}/jobs/${job.body.id}/result`, { leaseId: job.body.leaseId, outcome: "pushed" });
  }
  await measure("empty poll", await asNode("POST", `${API}/jobs/lease`, { leaseSeconds: 60 }), 1);
  await measure("heartbeat", await asNode("POST", `${API}/nodes/heartbeat`, {}), 1);
  await call("POST", `${API}/repos/${repoId}/sync`, { token: admin });
  const job = await measure("lease", await asNode("POST", `${API}/jobs/lease`, { leaseSeconds: 60 }), 2);
  const lease = { leaseId: job.body.leaseId };
  await measure("renew", await asNode("POST", `${API}/jobs/${job.body.id}/renew`, { ...lease, leaseSeconds: 60 }), 1);
  const done = await measure("report", await asNode("POST", `${API}/jobs/${job.body.id}/result`, { ...lease, outcome: "pushed", fingerprint: "fp-trips" }), 2);
  assert.equal(done.body.job.state, "DONE");
  await measure("repeated report", await asNode("POST", `${API}/jobs/${job.body.id}/result`, { ...lease, outcome: "pushed" }), 1);
  // The pull's report queued the push mirror; another sync queues a pull, which goes first. Its
  // report asks for the next job: the result and the next lease share one batch, and the push
  // leased with it is marked started: three in all (were four).
  await call("POST", `${API}/repos/${repoId}/sync`, { token: admin });
  const pull = await asNode("POST", `${API}/jobs/lease`, { leaseSeconds: 60 });
  assert.equal(pull.body.remoteMirror ?? null, null, "the pull first");
  const chained = await measure(
    "report with the next lease",
    await asNode("POST", `${API}/jobs/${pull.body.id}/result`, { leaseId: pull.body.leaseId, outcome: "pushed", fingerprint: "fp-trips", next: { leaseSeconds: 60 } }),
    3,
  );
  assert.ok(chained.body.next?.remoteMirror, "the push mirror's job came with the result");
  await asNode("POST", `${API}/jobs/${chained.body.next.id}/result`, { leaseId: chained.body.next.leaseId, outcome: "pushed" });
  console.log(`node protocol round trips: ${Object.entries(trips).map(([k, v]) => `${k} ${v}`).join("; ")}`);
});

test("20 concurrent creations of one project key give exactly one 201", async () => {
  const answers = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      call("POST", "/rest/api/1.0/projects", { token: admin, json: { key: "RACE", name: `Race ${i}` } }),
    ),
  );
  const statuses = answers.map((r) => r.status).sort();
  assert.equal(statuses.filter((s) => s === 201).length, 1, statuses.join(","));
  assert.ok(statuses.every((s) => s === 201 || s === 409), statuses.join(","));
  for (const r of answers.filter((r) => r.status === 409)) {
    assert.equal(r.body.errors[0].message, "That project key is already taken.");
  }
  const page = await call("GET", "/rest/api/1.0/projects?limit=1000", { token: admin });
  assert.equal(page.body.values.filter((p) => p.key === "RACE").length, 1);
});

test("50 concurrent syncs of one mirror leave one waiting job", async () => {
  const m = await call("POST", `/api/v4/projects/${repoId}/remote_mirrors`, {
    token: admin,
    json: { url: "https://example.com/fifty.git", enabled: false },
  });
  assert.equal(m.status, 201);
  assert.equal(
    (await call("PUT", `/api/v4/projects/${repoId}/remote_mirrors/${m.body.id}`, { token: admin, json: { enabled: true } })).status,
    200,
  );
  const answers = await Promise.all(
    Array.from({ length: 50 }, () => call("POST", `/api/v4/projects/${repoId}/remote_mirrors/${m.body.id}/sync`, { token: admin })),
  );
  assert.ok(answers.every((r) => r.status === 204), answers.map((r) => r.status).join(","));
  const jobs = await call("GET", `${API}/repos/${repoId}/jobs?limit=1000`, { token: admin });
  const waiting = jobs.body.values.filter((j) => j.remoteMirrorId === m.body.id && j.state === "QUEUED");
  assert.equal(waiting.length, 1, JSON.stringify(jobs.body.values));
});

test("a webhook secret set while polls and results update the repository survives", async () => {
  const scheduled = () => fetch(`${worker.url}/__scheduled?cron=*+*+*+*+*`);
  let secret;
  const race = async () => {
    for (let i = 0; i < 12; i++) {
      await scheduled();
      const job = await asNode("POST", `${API}/jobs/lease`, { leaseSeconds: 60, repositoryId: repoId });
      if (job.status !== 200) continue;
      await asNode("POST", `${API}/jobs/${job.body.id}/result`, {
        leaseId: job.body.leaseId,
        outcome: job.body.kind === "PULL_MIRROR" ? "pushed" : "error",
        message: "race",
        fingerprint: `fp-${i}`,
      });
    }
  };
  const setSecret = async () => {
    await new Promise((r) => setTimeout(r, 30));
    const r = await call("PUT", `${API}/repos/${repoId}/webhook`, { token: admin });
    assert.equal(r.status, 200, r.text);
    secret = r.body.secret;
  };
  await Promise.all([race(), race(), setSecret()]);
  const delivery = await call("POST", `${API}/repos/${repoId}/webhook`, {
    headers: { "X-Gitlab-Token": secret, "X-Gitlab-Event": "Push Hook" },
    json: { object_kind: "push" },
  });
  assert.equal(delivery.status, 202, `the secret survived the race: ${delivery.text}`);
});

test("the first and the last page of 2,000 repositories cost the same round trips", async () => {
  await call("GET", "/api/v4/user", { token: admin });
  const first = await call("GET", "/rest/api/latest/repos?projectkey=BULK&limit=25", { token: admin });
  const last = await call("GET", `/rest/api/latest/repos?projectkey=BULK&limit=25&start=${MANY - 25}`, { token: admin });
  assert.equal(first.status, 200);
  assert.deepEqual([first.body.size, first.body.isLastPage, first.body.nextPageStart], [25, false, 25]);
  assert.deepEqual([last.body.size, last.body.isLastPage, last.body.values.at(-1).slug], [25, true, `r0${MANY}`]);
  assert.equal(roundTrips(first), roundTrips(last));
  assert.equal(roundTrips(last), 1);
  const durations = [first, last].map((r) => /dur=([\d.]+)/.exec(r.headers.get("server-timing"))[1]);
  console.log(`repos page 1 and page ${MANY / 25}: 1 round trip each (${durations.join(" ms, ")} ms)`);
});
