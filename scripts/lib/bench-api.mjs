// API latency and throughput under workerd with a real local D1: health (no storage), the
// caller (`GET /api/v4/user`), a mirror list and a status, at 1 and at 20 concurrent clients,
// as ratios to health measured in the same run. A report, not a test: it prints figures and
// says which targets are met.
import http from "node:http";
import autocannon from "autocannon";
import { startWorker, client, roundTrips } from "../../tests/support/worker.mjs";
import { record } from "./bench-record.mjs";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const worker = await startWorker();
try {
  const call = client(worker.url);
  const token = worker.adminToken;
  await call("POST", "/rest/api/1.0/projects", { token, json: { key: "BENCH", name: "Bench" } });
  const repo = (await call("POST", "/rest/api/1.0/projects/BENCH/repos", {
    token,
    json: { name: "r", upstreamUrl: "https://example.com/up.git" },
  })).body;
  for (const i of [1, 2, 3]) {
    await call("POST", `/api/v4/projects/${repo.id}/remote_mirrors`, {
      token,
      json: { url: `https://bot:pw@example.com/t${i}.git`, enabled: true },
    });
  }
  const routes = [
    ["health", "/rest/mirrorfarm/1.0/health"],
    ["GET /api/v4/user", "/api/v4/user"],
    ["mirror list", `/api/v4/projects/${repo.id}/remote_mirrors`],
    ["status", `/rest/mirrorfarm/1.0/repos/${repo.id}/status`],
  ];
  const headers = { "PRIVATE-TOKEN": token };
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const once = (path, as = headers) =>
    new Promise((resolve, reject) => {
      const started = process.hrtime.bigint();
      const req = http.get(`${worker.url}${path}`, { agent, headers: as }, (res) => {
        res.resume();
        res.on("end", () => resolve([Number(process.hrtime.bigint() - started) / 1e6, res.statusCode]));
      });
      req.on("error", reject);
    });
  // One client: precise medians from sequential requests over one kept-alive connection.
  const single = async (path, as = headers) => {
    const times = [];
    const end = Date.now() + SECONDS * 1000;
    for (let i = 0; i < 20; i++) await once(path, as); // warm-up
    while (Date.now() < end) {
      const [ms, status] = await once(path, as);
      if (status !== 200) throw new Error(`${path}: ${status}`);
      times.push(ms);
    }
    times.sort((a, b) => a - b);
    return { median: times[Math.floor(times.length / 2)], rps: times.length / SECONDS };
  };
  // Twenty clients: autocannon's throughput.
  const loaded = (path) =>
    new Promise((resolve, reject) =>
      autocannon({ url: `${worker.url}${path}`, connections: 20, duration: SECONDS, headers }, (err, r) => {
        if (err) return reject(err);
        if (r.non2xx) return reject(new Error(`${path}: ${r.non2xx} non-2xx answers`));
        resolve({ median: r.latency.p50, rps: r.requests.average });
      }),
    );
  const rows = [];
  // BENCH_RATE_LIMIT_ONLY=1: only the rate-limit comparison below; BENCH_GROUPS_ONLY=1: only groups.
  const only = process.env.BENCH_RATE_LIMIT_ONLY || process.env.BENCH_GROUPS_ONLY;
  for (const [name, path] of only ? [] : routes) {
    const trips = roundTrips(await call("GET", path, { token }));
    rows.push({ name, trips, one: await single(path), twenty: await loaded(path) });
  }
  const [health = { one: { median: 1 }, twenty: { rps: 1 } }] = rows;
  const f = (n, d = 1) => n.toFixed(d);
  console.log(`\nAPI under workerd + local D1, ${SECONDS} s per measurement (ratios to health in this run)`);
  console.log("route                 D1 trips | 1 client: median ms  ratio   req/s | 20 clients: req/s  ratio  median ms");
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(21)} ${String(r.trips).padStart(8)} | ${f(r.one.median, 2).padStart(19)} ${f(r.one.median / health.one.median, 2).padStart(6)}× ${f(r.one.rps, 0).padStart(7)} | ${f(r.twenty.rps, 0).padStart(17)} ${f(r.twenty.rps / health.twenty.rps, 2).padStart(5)}× ${String(r.twenty.median).padStart(10)}`,
    );
  }
  for (const r of rows.filter((r) => r.name === "mirror list" || r.name === "status")) {
    const latency = r.one.median / health.one.median;
    const throughput = r.twenty.rps / health.twenty.rps;
    console.log(
      `target ${r.name}: median ≤ 2× health at 1 client: ${f(latency, 2)}× ${latency <= 2 ? "met" : "MISSED"}; ` +
        `throughput ≥ 0.6× health at 20 clients: ${f(throughput, 2)}× ${throughput >= 0.6 ? "met" : "MISSED"}`,
    );
    record(`edge throughput at 20 clients, ${r.name} vs health`, r.twenty.rps, "req/s", health.twenty.rps, "≥ 0.6×", throughput >= 0.6);
  }

  // Rate limiting: the same authenticated routes with the limit off and on, alternated three times
  // in this run (timings on this machine drift by more than the effect, so sides are interleaved). The caller's bucket is large enough never to refuse, so every request pays for the
  // check (the caller's Durable Object) and nothing else changes.
  const limit = (enabled) => call("PUT", "/rest/api/1.0/admin/rate-limit/settings", { token, json: { enabled } });
  const big = await call("PUT", "/rest/api/1.0/admin/rate-limit/settings/users/admin", { token, json: { settings: { capacity: 1000000, fillRate: 1000000 } } });
  if (big.status !== 200) throw new Error(`rate-limit settings: ${big.status} ${big.text}`);
  const mid = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const rateLimited = process.env.BENCH_GROUPS_ONLY ? [] : [["GET /api/v4/user", "/api/v4/user"], ["mirror list", `/api/v4/projects/${repo.id}/remote_mirrors`]];
  for (const [name, path] of rateLimited) {
    const medians = { off: [], on: [] };
    for (const enabled of [false, true, false, true, false, true]) {
      if ((await limit(enabled)).status !== 200) throw new Error("could not switch the rate limit");
      medians[enabled ? "on" : "off"].push((await single(path)).median);
    }
    await limit(false);
    const [off, on] = [mid(medians.off), mid(medians.on)];
    const added = on - off;
    console.log(`\nrate limiting, ${name} at 1 client, ${SECONDS} s per measurement, alternated off/on three times`);
    console.log(`  off: medians ${medians.off.map((m) => f(m, 3)).join(", ")} ms; on: ${medians.on.map((m) => f(m, 3)).join(", ")} ms`);
    console.log(`  added to the median: ${f(added, 3)} ms (median of each side's medians; ${f(on / off, 2)}× off)`);
    console.log(`target rate limiting adds ≤ 1 ms to the median (${name}): ${f(added, 3)} ms ${added <= 1 ? "met" : "MISSED"}`);
    record(`rate limiting, ${name} median at 1 client, on vs off`, on, "ms", off, "≤ +1 ms", added <= 1);
  }

  // Group checks: the same repository read by a user holding a direct REPO_READ grant (the
  // baseline: how every access check worked before groups) and by one whose only grant comes
  // through one of the 20 groups they are in, 60 groups granting on 60 other repositories.
  // Same round trips expected (groups are read in the same statement); latency alternated.
  const ok = (r, what) => {
    if (r.status >= 300) throw new Error(`${what}: ${r.status} ${r.text}`);
    return r;
  };
  const userToken = async (name) => {
    ok(await call("POST", `/rest/api/1.0/admin/users?name=${name}`, { token }), `user ${name}`);
    return ok(await call("PUT", `/rest/access-tokens/1.0/users/${name}`, { token, json: { name: "bench" } }), `token ${name}`).body.token;
  };
  const direct = await userToken("direct");
  const grouped = await userToken("grouped");
  ok(await call("PUT", "/rest/api/1.0/projects/BENCH/repos/r/permissions/users?name=direct&permission=REPO_READ", { token }), "direct grant");
  for (let g = 0; g < 60; g++) {
    ok(await call("POST", `/rest/api/1.0/admin/groups?name=team-${g}`, { token }), "group");
    ok(await call("POST", "/rest/api/1.0/projects/BENCH/repos", { token, json: { name: `other-${g}` } }), "repository");
    ok(await call("PUT", `/rest/api/1.0/projects/BENCH/repos/other-${g}/permissions/groups?name=team-${g}&permission=REPO_WRITE`, { token }), "group grant");
    if (g < 20) ok(await call("POST", "/rest/api/1.0/admin/groups/add-users", { token, json: { group: `team-${g}`, users: ["grouped"] } }), "member");
  }
  ok(await call("PUT", "/rest/api/1.0/projects/BENCH/repos/r/permissions/groups?name=team-7&permission=REPO_READ", { token }), "the one group grant on r");
  const repoPath = "/rest/api/1.0/projects/BENCH/repos/r";
  const tripsOf = async (t) => roundTrips(ok(await call("GET", repoPath, { token: t }), "read"));
  const [directTrips, groupTrips] = [await tripsOf(direct), await tripsOf(grouped)];
  const medians = { direct: [], grouped: [] };
  for (const who of ["direct", "grouped", "direct", "grouped", "direct", "grouped"]) {
    medians[who].push((await single(repoPath, { "PRIVATE-TOKEN": who === "direct" ? direct : grouped })).median);
  }
  const [base, viaGroup] = [mid(medians.direct), mid(medians.grouped)];
  console.log(`\ngroup checks: GET ${repoPath} at 1 client, ${SECONDS} s per measurement, alternated three times`);
  console.log(`  direct grant: ${directTrips} D1 round trips, medians ${medians.direct.map((m) => f(m, 3)).join(", ")} ms`);
  console.log(`  through a group (member of 20 of 60 groups): ${groupTrips} D1 round trips, medians ${medians.grouped.map((m) => f(m, 3)).join(", ")} ms`);
  console.log(`target group checks add no D1 round trip: ${groupTrips - directTrips} ${groupTrips === directTrips ? "met" : "MISSED"}`);
  console.log(`target group checks ≤ 1.1× the direct grant's median: ${f(viaGroup / base, 3)}× ${viaGroup / base <= 1.1 ? "met" : "MISSED"}`);
  agent.destroy();
} finally {
  await worker.stop();
}
