// Migration benchmarks: two Workers under workerd with real local D1 and R2, a farm node each (the
// `native` build). A report, not a test; each figure is compared with plain git doing the same
// work, in the same run.
//
// 1. Export of 200 small repositories whose copies on A's node are current, from the request
//    until the job is COMPLETED (manifest, bundles made in parallel, one tar streamed into R2),
//    against `git bundle create` of the same 200 copies one after another. Target ≤ 0.6×.
// 2. Import of that archive into B, from the request until COMPLETED (archive streamed from R2,
//    each repository unbundled, hashed and created whole by the edge, its copy moved into place),
//    against `git clone` of the same 200 bundles one after another. Reported; no target.
import { spawn, execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { createHash } from "node:crypto";
import { cpSync, mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startWorker, client, ROOT } from "../../tests/support/worker.mjs";
import { git, gitEnv } from "../../tests/support/git.mjs";

const REPOS = Number(process.env.BENCH_MIGRATION_REPOS ?? 200);
const RUNNER = path.join(ROOT, "target/native/mirrorfarm-runner");
const dir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-bench-migration-"));
const run = promisify(execFile);
const sleep = (t) => new Promise((r) => setTimeout(r, t));
const secs = (ms) => `${(ms / 1000).toFixed(2)} s`;
const verdict = (ok) => (ok ? "met" : "MISSED");
const children = [];

function startNode(worker, token, name) {
  let log = "";
  const child = spawn(RUNNER, ["run", "--edge-url", worker.url, "--data-dir", path.join(dir, name), "--poll-ms", "200"], {
    env: { ...process.env, MIRRORFARM_NODE_TOKEN: token, MIRRORFARM_LOG: process.env.BENCH_RUNNER_LOG ?? "warn" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  children.push(child);
  return { child, log: () => log };
}

async function finished(as, url) {
  for (;;) {
    const j = (await as("GET", url)).body;
    if (["COMPLETED", "FAILED", "CANCELED"].includes(j.state)) return j;
    await sleep(100);
  }
}

/** A small repository: three commits on main, a branch, a tag (the farm bench's template). */
function template(repo) {
  const work = path.join(dir, "template-work");
  execFileSync("git", ["init", "-q", "--bare", "-b", "main", repo], { env: gitEnv });
  execFileSync("git", ["clone", "-q", repo, work], { env: gitEnv });
  for (const i of [1, 2, 3]) git(work, "commit", "-q", "--allow-empty", "-m", `commit ${i}`);
  git(work, "branch", "dev");
  git(work, "tag", "v1");
  git(work, "push", "-q", "origin", "main", "dev", "v1");
}

/** The content hash of a repository's branches and tags (README "Hashes"). */
function contentHash(repo) {
  const lines = execFileSync("git", ["-C", repo, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags"], { env: gitEnv })
    .toString()
    .split("\n")
    .filter(Boolean)
    .sort((a, b) => Buffer.compare(Buffer.from(a.split(" ")[1]), Buffer.from(b.split(" ")[1])));
  return createHash("sha256").update(lines.map((l) => `${l}\n`).join("")).digest("hex");
}

execFileSync("cargo", ["build", "-q", "--profile", "native", "-p", "mirrorfarm-runner"], { cwd: ROOT, stdio: "inherit" });
const tpl = path.join(dir, "template.git");
template(tpl);
const hash = contentHash(tpl);
// A's repositories, their hashes, and A's node's current copies of them (`repos/<id>.git`).
const seedSql = `
  -- No fixed id: the administrator's personal project may already hold one.
  INSERT INTO projects (key, name, public, created_at) VALUES ('MB', 'Migration bench', 0, 0);
  WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ${REPOS})
    INSERT INTO repositories (id, project_id, slug, name, default_branch, public, forkable, upstream_url, upstream_url_masked,
      hierarchy_id, created_at)
    SELECT i + 1, (SELECT id FROM projects WHERE key = 'MB'), printf('repo-%04d', i), printf('repo-%04d', i), 'main', 0, 1, printf('git://127.0.0.1:9/repo-%04d.git', i),
      printf('git://127.0.0.1:9/repo-%04d.git', i), lower(hex(randomblob(10))), 0 FROM n;
  INSERT INTO repository_hashes (repository_id, content, computed_at) SELECT id, '${hash}', 0 FROM repositories;
`;
for (let id = 1; id <= REPOS; id++) cpSync(tpl, path.join(dir, "node-a", "repos", `${id}.git`), { recursive: true });
let a, b;
try {
  a = await startWorker({ seedSql });
  b = await startWorker({});
  const asA = (method, url, json) => client(a.url)(method, url, { token: a.adminToken, json });
  const asB = (method, url, json) => client(b.url)(method, url, { token: b.adminToken, json });
  startNode(a, (await asA("POST", "/rest/mirrorfarm/1.0/nodes", { name: "bench-a" })).body.token, "node-a");
  startNode(b, (await asB("POST", "/rest/mirrorfarm/1.0/nodes", { name: "bench-b" })).body.token, "node-b");
  await sleep(500);

  // 1. git bundle create, one after another, then the export.
  mkdirSync(path.join(dir, "bundles"));
  const byHand = Date.now();
  for (let id = 1; id <= REPOS; id++) {
    const copy = path.join(dir, "node-a", "repos", `${id}.git`);
    await run("git", ["-C", copy, "bundle", "create", "--quiet", path.join(dir, "bundles", `${id}.bundle`), "--branches", "--tags"], { env: gitEnv });
  }
  const bundleMs = Date.now() - byHand;
  const started = Date.now();
  const exp = await asA("POST", "/rest/api/1.0/migration/exports", { repositoriesRequest: { includes: [{ projectKey: "*", slug: "*" }] } });
  if (exp.status !== 200) throw new Error(exp.text);
  const exported = await finished(asA, `/rest/api/1.0/migration/exports/${exp.body.id}`);
  const exportMs = Date.now() - started;
  if (exported.state !== "COMPLETED") throw new Error(JSON.stringify(exported));
  const ratio1 = exportMs / bundleMs;
  console.log(`export of ${REPOS} repositories (bundles in parallel, one tar into R2): ${secs(exportMs)}, ${(REPOS / (exportMs / 1000)).toFixed(1)} repos/s`);
  console.log(`  git bundle create of the same ${REPOS}, one after another: ${secs(bundleMs)}, ${(REPOS / (bundleMs / 1000)).toFixed(1)} repos/s`);
  console.log(`  ratio ${ratio1.toFixed(2)}× (target ≤ 0.6×: ${verdict(ratio1 <= 0.6)})`);

  // 2. The archive into B's R2 (not timed), git clone of the bundles one after another, then the import.
  const file = path.join(dir, "archive.tar");
  const wrangler = path.join(ROOT, "node_modules/.bin/wrangler");
  const env = { ...process.env, WRANGLER_SEND_METRICS: "false" };
  await run(wrangler, ["r2", "object", "get", `mirrorfarm-blobs/${exported.archivePath}`, "--local", "--persist-to", a.stateDir, "--file", file], { cwd: ROOT, env });
  await run(wrangler, ["r2", "object", "put", "mirrorfarm-blobs/migration/import/bench.tar", "--local", "--persist-to", b.stateDir, "--file", file], { cwd: ROOT, env });
  const cloning = Date.now();
  for (let id = 1; id <= REPOS; id++) {
    await run("git", ["clone", "-q", "--bare", path.join(dir, "bundles", `${id}.bundle`), path.join(dir, "clones", `${id}.git`)], { env: gitEnv });
  }
  const cloneMs = Date.now() - cloning;
  const importing = Date.now();
  const imp = await asB("POST", "/rest/api/1.0/migration/imports", { archivePath: "bench.tar" });
  if (imp.status !== 200) throw new Error(imp.text);
  const imported = await finished(asB, `/rest/api/1.0/migration/imports/${imp.body.id}`);
  const importMs = Date.now() - importing;
  if (imported.state !== "COMPLETED") throw new Error(JSON.stringify(imported));
  const ratio2 = importMs / cloneMs;
  console.log(`import of ${REPOS} repositories (each unbundled, hashed, created in one D1 batch, moved into place): ${secs(importMs)}, ${(REPOS / (importMs / 1000)).toFixed(1)} repos/s`);
  console.log(`  git clone of the same ${REPOS} bundles, one after another: ${secs(cloneMs)}, ${(REPOS / (cloneMs / 1000)).toFixed(1)} repos/s`);
  console.log(`  ratio ${ratio2.toFixed(2)}× (reported; one edge round trip per repository keeps each whole)`);
} finally {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGTERM");
  await sleep(300);
  await a?.stop();
  await b?.stop();
  rmSync(dir, { recursive: true, force: true });
}
