// The deploy path, offline: `npm run deploy --dry-run` writes the deploy configuration and has
// wrangler bundle the Worker with every binding (D1, KV, R2, both Durable Objects), as a real
// deploy would upload it; the systemd unit passes `systemd-analyze verify` and is hardened; the
// runner's help tells a user how to register a node.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ROOT, startWorker, client } from "../support/worker.mjs";

const RUNNER = path.join(ROOT, "target/debug/mirrorfarm-runner");

test("the dry-run deploy bundles the Worker with every binding and touches no network", () => {
  const out = path.join(ROOT, "build/deploy-dry-run");
  rmSync(out, { recursive: true, force: true });
  const run = spawnSync("node", [path.join(ROOT, "scripts/lib/deploy.mjs"), "--dry-run"], {
    cwd: ROOT,
    // No credentials at all: a step that reached Cloudflare would fail.
    env: { ...process.env, CLOUDFLARE_API_TOKEN: "", MIRRORFARM_WORKER_NAME: "mirrorfarm-dry", MIRRORFARM_CORS_ORIGINS: "https://status.example.com" },
    encoding: "utf8",
  });
  assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
  for (const binding of ["env.SIGNALS (Signals)", "env.RATE_LIMITS (RateLimits)", "env.DB (mirrorfarm)", "env.BLOBS (mirrorfarm-blobs)", "env.CACHE", "MIRRORFARM_CORS_ORIGINS"]) {
    assert.ok(run.stdout.includes(binding), `${binding} missing from:\n${run.stdout}`);
  }
  for (const planned of ["d1 migrations apply DB --remote", "secret put MIRRORFARM_SEAL_KEY", "r2 bucket create mirrorfarm-blobs", "d1 create mirrorfarm-dry"]) {
    assert.ok(run.stdout.includes(planned), `the plan lacks ${planned}`);
  }
  const files = readdirSync(out);
  const wasm = files.find((f) => f.endsWith(".wasm"));
  assert.ok(files.includes("index.js") && wasm, files.join(", "));
  console.log(`dry-run bundle: index.js ${statSync(path.join(out, "index.js")).size} B, ${wasm} ${statSync(path.join(out, wasm)).size} B`);
  const config = readFileSync(path.join(ROOT, "build/wrangler.deploy.toml"), "utf8");
  assert.match(config, /name = "mirrorfarm-dry"/);
  assert.match(config, /new_sqlite_classes = \["Signals"\]/);
  assert.match(config, /new_sqlite_classes = \["RateLimits"\]/);
  assert.match(config, /migrations_dir = "\.\.\/migrations"/);
  assert.ok(!existsSync(path.join(ROOT, ".mirrorfarm/deploy-seal-key")) || process.env.MIRRORFARM_SEAL_KEY, "a dry run makes no sealing key");
});

test("the systemd unit is valid and hardened, and the runner's help shows how to register a node", () => {
  execFileSync("cargo", ["build", "-q", "-p", "mirrorfarm-runner"], { cwd: ROOT, stdio: "inherit" });
  const unit = readFileSync(path.join(ROOT, "deploy/mirrorfarm-runner.service"), "utf8");
  for (const line of ["DynamicUser=yes", "ProtectSystem=strict", "StateDirectory=mirrorfarm-runner", "NoNewPrivileges=yes", "PrivateTmp=yes", "CapabilityBoundingSet="]) {
    assert.ok(unit.split("\n").includes(line), `${line} missing`);
  }
  const dir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-unit-"));
  try {
    // Verified against the binary this test built (the unit names where an install puts it).
    const file = path.join(dir, "mirrorfarm-runner.service");
    writeFileSync(file, unit.replaceAll("/usr/local/bin/mirrorfarm-runner", RUNNER));
    const verify = spawnSync("systemd-analyze", ["verify", file], { encoding: "utf8" });
    if (verify.error?.code === "ENOENT") console.log("systemd-analyze is not installed: the unit's syntax was not verified");
    else assert.equal(verify.status, 0, verify.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const help = execFileSync(RUNNER, ["--help"], { encoding: "utf8" });
  assert.match(help, /mirrorfarm-runner register --edge-url/);
  assert.match(help, /MIRRORFARM_NODE_TOKEN/);
  const register = execFileSync(RUNNER, ["register", "--help"], { encoding: "utf8" });
  assert.match(register, /MIRRORFARM_ADMIN_TOKEN/);
  assert.ok(existsSync(path.join(ROOT, "deploy/Containerfile")));
});

test("`mirrorfarm-runner register` registers a node whose token the edge accepts", async () => {
  const worker = await startWorker();
  try {
    const run = spawnSync(RUNNER, ["register", "--edge-url", worker.url, "--name", "deployed-1"], {
      env: { ...process.env, MIRRORFARM_ADMIN_TOKEN: worker.adminToken },
      encoding: "utf8",
    });
    assert.equal(run.status, 0, run.stderr);
    const token = run.stdout.trim();
    assert.match(token, /^mfn_[0-9a-f]+$/);
    assert.ok(!run.stderr.includes(token) && !run.stderr.includes(worker.adminToken), "no token on stderr");
    const call = client(worker.url);
    const beat = await call("POST", "/rest/mirrorfarm/1.0/nodes/heartbeat", { headers: { Authorization: `Bearer ${token}` }, json: {} });
    assert.equal(beat.status, 200, beat.text);
    const again = spawnSync(RUNNER, ["register", "--edge-url", worker.url, "--name", "deployed-1"], {
      env: { ...process.env, MIRRORFARM_ADMIN_TOKEN: worker.adminToken },
      encoding: "utf8",
    });
    assert.notEqual(again.status, 0, "a taken name is refused");
    const wrong = spawnSync(RUNNER, ["register", "--edge-url", worker.url, "--name", "x"], {
      env: { ...process.env, MIRRORFARM_ADMIN_TOKEN: "mfp_not_a_real_token_000000" },
      encoding: "utf8",
    });
    assert.notEqual(wrong.status, 0);
    assert.match(wrong.stderr, /401/);
  } finally {
    await worker.stop();
  }
});
