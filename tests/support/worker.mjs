// Starts the built Worker under `wrangler dev` (workerd) with a fresh local D1 in a temp dir,
// migrated and with a known admin token, and stops it when the test ends.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { bootstrapAdmin, d1, migrate } from "../../scripts/lib/bootstrap.mjs";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const OUTPUT = path.join(ROOT, "test-output");

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

/** A running Worker: `url`, `adminToken`, `stateDir`, `logs()` and `stop()`. */
export async function startWorker({ allowedHosts = "", retryBaseMs = 30000, pollIntervalMs = 300000, corsOrigins = "", syncWaitMs = 20000, seedSql, licensePublicKey = "" } = {}) {
  const stateDir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-e2e-"));
  migrate({ persistTo: stateDir });
  const adminToken = bootstrapAdmin({ persistTo: stateDir, token: `mfp_e2e_${randomBytes(16).toString("hex")}` });
  // Bulk fixtures go straight into the database before the Worker holds it.
  if (seedSql) d1(seedSql, { persistTo: stateDir });
  const sealKey = randomBytes(32).toString("hex");
  // A free port can be taken between being found and being bound (another Worker's runtime binds
  // ports of its own): then it starts again on others.
  let started;
  for (let attempt = 1; ; attempt++) {
    try {
      started = await launch({ stateDir, sealKey, allowedHosts, retryBaseMs, pollIntervalMs, corsOrigins, syncWaitMs, licensePublicKey });
      break;
    } catch (e) {
      if (attempt >= 3 || !/Address already in use/.test(String(e.message))) throw e;
    }
  }
  const { child, url, port } = started;
  const output = () => started.output();
  return {
    url,
    adminToken,
    stateDir,
    sealKey,
    logs: output,
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
      mkdirSync(OUTPUT, { recursive: true });
      writeFileSync(path.join(OUTPUT, `worker-${port}.log`), output());
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

/** Starts `wrangler dev` on free ports and waits until it answers; throws with its output if it
 * exits or does not answer within 60 s. */
async function launch({ stateDir, sealKey, allowedHosts, retryBaseMs, pollIntervalMs, corsOrigins, syncWaitMs, licensePublicKey }) {
  const port = await freePort();
  // Its own inspector port too, so a running `npm start` (or another suite) does not collide.
  const inspectorPort = await freePort();
  const child = spawn(
    path.join(ROOT, "node_modules/.bin/wrangler"),
    [
      "dev", "--ip", "127.0.0.1", "--port", String(port), "--inspector-port", String(inspectorPort), "--persist-to", stateDir,
      "--show-interactive-dev-session=false",
      // Serves /__scheduled, so tests can run the cron on demand (with static assets configured,
      // /cdn-cgi/handler/scheduled no longer reaches the Worker).
      "--test-scheduled",
      "--var", `MIRRORFARM_ALLOWED_HOSTS:${allowedHosts}`,
      "--var", `MIRRORFARM_SEAL_KEY:${sealKey}`,
      "--var", `MIRRORFARM_RETRY_BASE_MS:${retryBaseMs}`,
      "--var", `MIRRORFARM_POLL_INTERVAL_MS:${pollIntervalMs}`,
      "--var", `MIRRORFARM_CORS_ORIGINS:${corsOrigins}`,
      "--var", `MIRRORFARM_SYNC_WAIT_MS:${syncWaitMs}`,
      "--var", `MIRRORFARM_LICENSE_PUBLIC_KEY:${licensePublicKey}`,
    ],
    { cwd: ROOT, env: { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited:\n${output}`);
    try {
      const r = await fetch(`${url}/rest/mirrorfarm/1.0/health`);
      if (r.ok) break;
    } catch {}
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`wrangler dev did not answer within 60 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { child, url, port, output: () => output };
}

/** The D1 round trips a response's `Server-Timing` header reports (throws if it has none). */
export function roundTrips(response) {
  const timing = response.headers.get("server-timing") ?? "";
  const m = /d1;desc="(\d+) round trips?"/.exec(timing);
  if (!m) throw new Error(`no D1 Server-Timing entry in ${JSON.stringify(timing)}`);
  return Number(m[1]);
}

/** A small HTTP client: `call(method, path, {token, json, form, headers})` → {status, headers, body, text}. */
export function client(baseUrl) {
  return async function call(method, pathAndQuery, { token, json, form, body, headers = {} } = {}) {
    const h = { ...headers };
    if (token) h["PRIVATE-TOKEN"] = token;
    let payload = body;
    if (json !== undefined) {
      h["Content-Type"] = "application/json";
      payload = JSON.stringify(json);
    } else if (form !== undefined) {
      h["Content-Type"] = "application/x-www-form-urlencoded";
      payload = new URLSearchParams(form).toString();
    }
    const r = await fetch(baseUrl + pathAndQuery, { method, headers: h, body: payload });
    const text = await r.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {}
    return { status: r.status, headers: r.headers, body: parsed, text };
  };
}
