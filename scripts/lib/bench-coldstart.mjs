// Cold start under workerd: a new isolate's first answer from our Worker against a minimal
// workers-rs Worker's (crates/edge/bench/minimal, built by build-minimal-worker.sh), issue 21's
// goal ≤ 2×.
//
// Each round starts a new Miniflare, that is a new workerd process and isolate, for each Worker in
// turn (ours, then the minimal one), and times `new Miniflare(…)` to `ready` (workerd starts, loads
// and compiles the script and its wasm) and `ready` to the first answer (ours: health, through the
// assets router as wrangler.toml configures it; the minimal one: `/`). Cold start is their sum; the
// figures are medians over BENCH_COLDSTART_ROUNDS rounds (default 7), after one untimed round
// that warms the file cache. Our Worker runs with wrangler.toml's bindings (D1, KV, R2, Durable
// Objects, assets) on a temp state dir whose D1 is migrated before any timed start.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { Miniflare } from "miniflare";
import { unstable_getMiniflareWorkerOptions } from "wrangler";
import { ROOT, roundTrips } from "../../tests/support/worker.mjs";
import { migrate } from "./bootstrap.mjs";
import { record } from "./bench-record.mjs";
import { gzipKB } from "./bench-size.mjs";

const ROUNDS = Number(process.env.BENCH_COLDSTART_ROUNDS ?? 7);
const OURS = path.join(ROOT, "crates/edge/build");
const MINIMAL = path.join(ROOT, "crates/edge/bench/minimal/build");

// Both: no `Request.cf` download at start (without network it waits 3 s for it, then falls back);
// the Worker's request log (its stdout) is dropped, its errors are shown.
const shared = {
  cf: false,
  handleRuntimeStdio(stdout, stderr) {
    stdout.resume();
    stderr.on("data", (chunk) => process.stderr.write(chunk));
  },
};

// Ours as `wrangler dev` runs it: wrangler.toml's bindings, state where `--persist-to` keeps it.
const stateDir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-coldstart-"));
migrate({ persistTo: stateDir });
const { workerOptions, main } = unstable_getMiniflareWorkerOptions(path.join(ROOT, "wrangler.toml"));
const state = (kind) => path.join(stateDir, "v3", kind);
const ours = {
  ...shared,
  ...workerOptions,
  modules: true,
  scriptPath: main,
  d1Persist: state("d1"),
  kvPersist: state("kv"),
  r2Persist: state("r2"),
  durableObjectsPersist: state("do"),
};
const minimal = {
  ...shared,
  modules: true,
  scriptPath: path.join(MINIMAL, "index.js"),
  modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
  compatibilityDate: workerOptions.compatibilityDate,
};

/** One cold start of a new workerd with `options`: ms to ready, ms from ready to the first answer
 * of `url` (which must be 200 and contain `expect`), the D1 round trips that answer reports, and
 * ms to a second answer. */
async function coldStart(options, url, expect) {
  const start = performance.now();
  const mf = new Miniflare(options);
  try {
    await mf.ready;
    const ready = performance.now();
    const response = await mf.dispatchFetch(url);
    const body = await response.text();
    const answered = performance.now();
    if (response.status !== 200 || !body.includes(expect)) {
      throw new Error(`${url} answered ${response.status}: ${body.slice(0, 200)}`);
    }
    const trips = response.headers.has("server-timing") ? roundTrips(response) : 0;
    // The same request again in the now warm isolate: what of the first answer is the request's own.
    await (await mf.dispatchFetch(url)).arrayBuffer();
    const again = performance.now() - answered;
    return { ready: ready - start, first: answered - ready, total: answered - start, again, trips };
  } finally {
    await mf.dispose();
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const f = (x) => x.toFixed(1);

// For context, not the goal: the minimal Worker with our bindings (but the Durable Objects, whose
// classes it lacks), which locally are services of their own that workerd starts as well (the
// simulators of D1, KV and R2, the assets router).
const targets = {
  ours: [ours, "http://localhost/rest/mirrorfarm/1.0/health", '"status":"ok"'],
  minimal: [minimal, "http://localhost/", "ok"],
  bound: [{ ...ours, scriptPath: minimal.scriptPath, durableObjects: {} }, "http://localhost/", "ok"],
};
const runs = { ours: [], minimal: [], bound: [] };
try {
  for (let round = 0; round <= ROUNDS; round++) {
    for (const name of Object.keys(targets)) {
      const run = await coldStart(...targets[name]);
      if (round > 0) runs[name].push(run);
    }
  }
} finally {
  rmSync(stateDir, { recursive: true, force: true });
}

const summary = (name) => {
  const pick = (key) => median(runs[name].map((r) => r[key]));
  return { ready: pick("ready"), first: pick("first"), total: pick("total"), again: pick("again"), trips: pick("trips") };
};
const [o, m, b] = [summary("ours"), summary("minimal"), summary("bound")];
const size = { ours: gzipKB(OURS, "index_bg.wasm", "index.js"), minimal: gzipKB(MINIMAL, "index_bg.wasm", "index.js") };
console.log(`cold start under workerd (new Miniflare → ready → first answer), medians of ${ROUNDS} rounds, ms:`);
console.log(`${"".padEnd(27)}   ready   first answer   cold start   (second answer)   wasm + JS gzip`);
const rows = [
  ["ours (health)", o, size.ours],
  ["minimal (/)", m, size.minimal],
  ["(minimal, our bindings)", b, null],
];
for (const [name, s, kb] of rows) {
  console.log(
    `${name.padEnd(27)} ${f(s.ready).padStart(7)} ${f(s.first).padStart(14)} ${f(s.total).padStart(12)} ${f(s.again).padStart(17)} ${kb === null ? "" : `${f(kb).padStart(13)} KB`}`,
  );
}
console.log(`  ours' first answer made ${o.trips} D1 round trip(s)`);
for (const name of ["ours", "minimal"]) console.log(`  cold starts of each round, ${name}: ${runs[name].map((r) => f(r.total)).join(", ")} ms`);
const ratio = o.total / m.total;
console.log(`target cold start ≤ 2× a minimal workers-rs Worker's: ${ratio.toFixed(2)}× ${ratio <= 2 ? "met" : "MISSED"}`);
record("cold start (new workerd isolate → first answer) vs a minimal workers-rs Worker", o.total, "ms", m.total, "≤ 2×", o.total <= 2 * m.total);
