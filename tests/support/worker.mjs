// Starts the built Worker under `wrangler dev` (workerd) with a fresh local D1 in a temp dir,
// migrated and with a known admin token, and stops it when the test ends.
import { spawn } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, rmSync, mkdirSync, renameSync, writeFileSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { createServer } from "node:net";
import { createHash, randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { adminInsert, d1, migrate } from "../../scripts/lib/bootstrap.mjs";

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

/**
 * A state directory whose local D1 has every migration applied by `wrangler d1 migrations apply`,
 * made once for each set of migrations (and wrangler.toml and wrangler version) and copied for
 * each Worker: wrangler takes about 6 s of CPU to apply them, a copy a few milliseconds. Test
 * files running side by side may both make it; the first rename wins.
 */
function migratedState() {
  const hash = createHash("sha256");
  hash.update(readFileSync(path.join(ROOT, "node_modules/wrangler/package.json")));
  hash.update(readFileSync(path.join(ROOT, "wrangler.toml")));
  const migrations = path.join(ROOT, "migrations");
  for (const name of readdirSync(migrations).sort()) hash.update(name).update(readFileSync(path.join(migrations, name)));
  const dir = path.join(tmpdir(), `mirrorfarm-migrated-${hash.digest("hex").slice(0, 16)}`);
  // A marker written last: a directory a temp cleaner half emptied is never taken for a template.
  const marker = (d) => path.join(d, "migrated");
  if (existsSync(marker(dir))) return dir;
  rmSync(dir, { recursive: true, force: true });
  const building = mkdtempSync(`${dir}.building-`);
  try {
    migrate({ persistTo: building });
    writeFileSync(marker(building), "");
  } catch (e) {
    rmSync(building, { recursive: true, force: true });
    throw e;
  }
  try {
    renameSync(building, dir);
  } catch (e) {
    rmSync(building, { recursive: true, force: true });
    if (!existsSync(marker(dir))) throw e;
  }
  return dir;
}

/** A running Worker: `url`, `adminToken`, `stateDir`, `logs()` and `stop()`.
 *
 * `direct`: `url` is the workerd runtime's own socket rather than `wrangler dev`'s port (see
 * `runtimeUrl`); `proxyUrl` is that port either way. */
export async function startWorker({ allowedHosts = "", retryBaseMs = 30000, pollIntervalMs = 300000, corsOrigins = "", syncWaitMs = 20000, seedSql, licensePublicKey = "", direct = false } = {}) {
  const stateDir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-e2e-"));
  cpSync(migratedState(), stateDir, { recursive: true });
  const adminToken = `mfp_e2e_${randomBytes(16).toString("hex")}`;
  // The database is new (no users): its administrator, and bulk fixtures, go straight into it
  // before the Worker holds it, in one call.
  d1(adminInsert(adminToken, Date.now()) + (seedSql ?? ""), { persistTo: stateDir });
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
  const { child, url: proxyUrl, port } = started;
  const output = () => started.output();
  let url = proxyUrl;
  if (direct) {
    try {
      url = await runtimeUrl(child.pid, port);
    } catch (e) {
      child.kill("SIGTERM");
      rmSync(stateDir, { recursive: true, force: true });
      throw e;
    }
  }
  return {
    url,
    proxyUrl,
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

/** The pids of `pid`'s descendants (Linux /proc). */
function descendants(pid) {
  const children = new Map();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // pid (comm) state ppid …: the name may hold spaces and parentheses.
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(entry));
    } catch {}
  }
  const out = [];
  for (let queue = [pid]; queue.length; ) for (const c of children.get(queue.shift()) ?? []) out.push(c), queue.push(c);
  return out;
}

/** The TCP ports process `pid` listens on (Linux /proc: its socket inodes, found in net/tcp). */
function listeningPorts(pid) {
  const inodes = new Set();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    } catch {}
  }
  const ports = [];
  for (const table of ["tcp", "tcp6"]) {
    let text = "";
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, "utf8");
    } catch {}
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is ADDR:PORT in hex; state 0A is LISTEN; field 9 is the inode.
      if (f.length > 9 && f[3] === "0A" && inodes.has(f[9])) ports.push(parseInt(f[1].split(":").pop(), 16));
    }
  }
  return ports;
}

/** The address of the workerd runtime that runs the Worker under `wrangler dev` (pid `wranglerPid`,
 * serving on `publicPort`), so that clients reach the Worker the way they do in production.
 *
 * `wrangler dev` runs two workerd processes: its ProxyWorker owns the public port and forwards each
 * request with `fetch()` to the runtime's entry socket (wrangler's
 * templates/startDevWorker/ProxyWorker.ts, `processQueue`), over a pool of keep-alive connections
 * kept by kj's HTTP client. That client drops an idle connection after 5 s
 * (`HttpClientSettings::idleTimeout`) and the runtime's kj HTTP server closes one after 5 s
 * (`HttpServerSettings::pipelineTimeout`): a request the proxy writes into a connection the runtime
 * is closing is lost before it reaches the Worker ("Network connection lost."), and the proxy
 * answers a POST with 503 "Your worker restarted mid-request" although nothing restarted (it
 * compares the request's whole URL with the runtime's bare origin to tell a restart). Under bursts
 * of concurrent requests a fraction of them land on such connections (scripts/lib/proxy_race.mjs).
 * Production has no such hop. The runtime is the other workerd process under `wrangler dev`: the
 * one of its ports that answers the Worker's health check. */
async function runtimeUrl(wranglerPid, publicPort) {
  const runtimes = descendants(wranglerPid).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0].endsWith("/workerd");
    } catch {
      return false;
    }
  });
  const candidates = runtimes.map(listeningPorts).filter((ports) => !ports.includes(publicPort)).flat();
  for (const port of candidates) {
    const url = `http://127.0.0.1:${port}`;
    try {
      const r = await fetch(`${url}/rest/mirrorfarm/1.0/health`, { signal: AbortSignal.timeout(5000) });
      const body = await r.text();
      if (r.status === 200 && body.includes('"status":"ok"')) return url;
    } catch {}
  }
  throw new Error(`no workerd runtime under wrangler dev (pid ${wranglerPid}) answers the health check on ports ${JSON.stringify(candidates)}`);
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
