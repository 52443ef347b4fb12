// Reproduces the 503 "Your worker restarted mid-request" that `npm run load` met at 200
// connections, with nothing but bursts of `POST …/health` (answered 405 by the Worker, no D1):
// a burst of N concurrent requests, a pause of X ms, another burst. Through `wrangler dev`'s port
// some of the second burst are lost on the way to the runtime; straight to the runtime none are.
//
// Why (wrangler 4.86.0, workerd 1.20260426.1): `wrangler dev` serves through its ProxyWorker, a
// Durable Object in a second workerd that forwards each request with `fetch()` to the runtime
// (node_modules/wrangler/templates/startDevWorker/ProxyWorker.ts, `processQueue`). That fetch
// goes over kj's pooled HTTP client, which keeps an idle connection for 5 s
// (`HttpClientSettings::idleTimeout`), while the runtime's kj HTTP server closes an idle
// keep-alive connection after 5 s (`HttpServerSettings::pipelineTimeout`). A request written into
// a connection the runtime is closing never reaches the Worker; the fetch rejects with
// "Network connection lost." (workerd src/workerd/jsg/util.c++, any DISCONNECTED exception), and
// the ProxyWorker, comparing the request's whole URL with the runtime's bare origin
// (ProxyWorker.ts lines 181-185, so they never match off "/"), takes it for a restart: a GET is
// queued for a replay that never comes, anything else is answered 503 (lines 215-224).
// Upstream: cloudflare/workers-sdk#14641, #15252, #15317; capnproto/capnproto#2785.
//
// Usage: node scripts/lib/proxy_race.mjs  (N, XS = pauses in ms, REPS override)
import { startWorker } from "../../tests/support/worker.mjs";

const N = Number(process.env.N ?? 100);
const XS = (process.env.XS ?? "2000,3000,3500,4000,4500,5000").split(",").map(Number);
const REPS = Number(process.env.REPS ?? 3);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const worker = await startWorker({ direct: true });
try {
  const burst = (base) =>
    Promise.all(
      Array.from({ length: N }, async () => {
        try {
          const r = await fetch(`${base}/rest/mirrorfarm/1.0/health`, { method: "POST" });
          const text = await r.text();
          return r.status === 405 ? null : `${r.status} ${text.slice(0, 40)}`;
        } catch (e) {
          return `error ${e.message}`;
        }
      }),
    );
  for (const [name, base] of [["wrangler dev's port", worker.proxyUrl], ["the runtime itself", worker.url]]) {
    for (const x of XS) {
      const bad = {};
      for (let rep = 0; rep < REPS; rep++) {
        await sleep(6500); // both pools empty: every idle connection is past 5 s
        await burst(base);
        await sleep(x);
        for (const b of await burst(base)) if (b) bad[b] = (bad[b] ?? 0) + 1;
      }
      const lost = Object.values(bad).reduce((a, b) => a + b, 0);
      console.log(`${name}: ${N} requests, ${x} ms, ${N} requests: ${lost} of ${N * REPS} not answered by the Worker ${lost ? JSON.stringify(bad) : ""}`);
    }
  }
} finally {
  await worker.stop();
}
