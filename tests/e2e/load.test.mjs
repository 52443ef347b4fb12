// A short run of `npm run load` (scripts/lib/load.mjs) inside `npm test`: the built Worker under
// workerd with reads, writes with unique names and node leases for 15 s, then 100 concurrent
// clones from a farm node's clone server. Only 200, 201 and 204 are expected (rate limits are
// off), every acknowledged write must read back, every clone must carry the upstream's refs.
// LOAD_TEST_CONNECTIONS sets the connections (default 50: this suite shares a small machine with
// the rest of the tests; `npm run load` runs 200 for 60 s).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { ROOT } from "../support/worker.mjs";
import { runLoad } from "../../scripts/lib/load.mjs";

const CONNECTIONS = Number(process.env.LOAD_TEST_CONNECTIONS ?? 50);

test(`load: ${CONNECTIONS} connections for 15 s, then 100 concurrent clones from a farm node`, async () => {
  execFileSync("cargo", ["build", "-q", "-p", "mirrorfarm-runner"], { cwd: ROOT, stdio: "inherit" });
  const r = await runLoad({ seconds: 15, connections: CONNECTIONS, clones: 100, log: (l) => console.log(l) });
  const f = r.api.figures;
  assert.ok(f.requests > 0 && f.acked.projects > 0 && f.acked.mirrors > 0 && f.acked.labels > 0, `the load did work: ${JSON.stringify(f)}`);
  assert.deepEqual(Object.fromEntries(r.api.unexpected), {}, "only 200, 201 and 204");
  assert.equal(f.errors + f.timeouts, 0, "no connection errors or timeouts");
  assert.deepEqual(r.api.lost, [], "every acknowledged write reads back");
  assert.deepEqual(r.clones.failures, [], "every clone succeeds with the upstream's content");
  assert.equal(r.clones.figures.clones, 100);
});
