// Mirror-farm benchmarks: the Worker under workerd with a real local D1 and Durable Object, a farm
// node (the `native` build), and real repositories served over authenticated smart HTTP. Each
// figure is compared with plain git doing the same work, in the same run. A report, not a test.
//
// 1. Discovery and first sync of 200 small repositories of a Bitbucket-REST upstream, from adding
//    the upstream server until every repository has synced, against `git clone --mirror` of the
//    same 200 one after another. Target ≤ 0.6×.
// 2. A poll of 1,000 unchanged farm repositories on one node, from the cron until every poll is
//    done: by the upstream's published content hashes (one paged listing; target ≤ 2 s), and
//    for an upstream that publishes none by each repository's refs (served by git daemon,
//    fingerprints compared, nothing fetched; target ≤ 10 s).
// 3. A clone from a farm node's clone server against `git clone` from `git daemon`, of the same
//    repository with 10,000 commits (median of several). Target ≤ 1.05×.
import { spawn, execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import { cpSync, mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startWorker, client, ROOT, freePort } from "../../tests/support/worker.mjs";
import { startGitServer } from "../../tests/support/git_http.mjs";
import { git, gitEnv } from "../../tests/support/git.mjs";
import { record } from "./bench-record.mjs";

const TOKEN = "bench-upstream-token-0123456789";
const REPOS = Number(process.env.BENCH_FARM_REPOS ?? 200);
const POLLED = Number(process.env.BENCH_FARM_POLLED ?? 1000);
const COMMITS = Number(process.env.BENCH_FARM_COMMITS ?? 10_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const CONCURRENCY = Number(process.env.BENCH_FARM_CONCURRENCY ?? 8);
// Which parts run (`discovery,clone,poll` by default), for working on one of them.
const ONLY = (process.env.BENCH_FARM_ONLY ?? "discovery,clone,poll").split(",");
const RUNNER = path.join(ROOT, "target/native/mirrorfarm-runner");

const dir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-bench-farm-"));
const served = (name) => path.join(dir, "served", `${name}.git`);
mkdirSync(path.join(dir, "served"));
const run = promisify(execFile);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const sleep = (t) => new Promise((r) => setTimeout(r, t));
const secs = (ms) => `${(ms / 1000).toFixed(2)} s`;
const verdict = (ok) => (ok ? "met" : "MISSED");
const children = [];

async function until(pred, what, limit = 600_000) {
  const deadline = Date.now() + limit;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function startNode(worker, token, name, extra = [], level = process.env.BENCH_RUNNER_LOG ?? "warn") {
  let log = "";
  const child = spawn(RUNNER, ["run", "--edge-url", worker.url, "--data-dir", path.join(dir, name), "--concurrency", String(CONCURRENCY), ...extra], {
    env: { ...process.env, MIRRORFARM_NODE_TOKEN: token, MIRRORFARM_LOG: level },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  children.push(child);
  return { child, log: () => log };
}

/** A small repository: three commits on main, a branch, a tag. */
function template() {
  const work = path.join(dir, "template-work");
  execFileSync("git", ["init", "-q", "--bare", "-b", "main", served("template")], { env: gitEnv });
  execFileSync("git", ["clone", "-q", served("template"), work], { env: gitEnv });
  for (const i of [1, 2, 3]) git(work, "commit", "-q", "--allow-empty", "-m", `commit ${i}`);
  git(work, "branch", "dev");
  git(work, "tag", "v1");
  git(work, "push", "-q", "origin", "main", "dev", "v1");
}

/** A repository with `n` commits, written with fast-import (one file changed per commit). */
function bigRepo(name, n) {
  execFileSync("git", ["init", "-q", "--bare", "-b", "main", served(name)], { env: gitEnv });
  let stream = "";
  for (let i = 1; i <= n; i++) {
    const blob = `line ${i}\n`;
    stream += `commit refs/heads/main\nmark :${i}\ncommitter Bench <bench@example.com> ${1_700_000_000 + i} +0000\n`;
    stream += `data ${`commit ${i}`.length}\ncommit ${i}\n`;
    if (i > 1) stream += `from :${i - 1}\n`;
    stream += `M 100644 inline file-${i % 100}.txt\ndata ${Buffer.byteLength(blob)}\n${blob}\n`;
  }
  execFileSync("git", ["-C", served(name), "fast-import", "--quiet"], { input: stream, env: gitEnv, maxBuffer: 1 << 30 });
  execFileSync("git", ["-C", served(name), "repack", "-adq"], { env: gitEnv });
}

/** The fingerprint a node records for a repository: SHA-256 of its branches and tags, listed. */
function fingerprint(repo) {
  const lines = execFileSync("git", ["-C", repo, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags"], { env: gitEnv })
    .toString()
    .split("\n")
    .filter(Boolean)
    .sort((a, b) => Buffer.compare(Buffer.from(a.split(" ")[1]), Buffer.from(b.split(" ")[1])));
  return createHash("sha256").update(lines.map((l) => `${l}\n`).join("")).digest("hex");
}

/** A Bitbucket Data Center REST fixture listing one project with the served repositories, and
 * publishing content hashes (`GET /rest/mirroring/latest/repos`) once `publish` gives them. */
async function bitbucketUpstream(gitServer, names) {
  let published = null;
  const fixture = { hashListings: 0 };
  const server = createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    // The hash listing shows what the caller may see: the poll's seeded upstream has no token
    // (it cannot be sealed from here), so that listing is open, as for public repositories.
    const open = url.pathname === "/rest/mirroring/latest/repos";
    if (!open && req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(401, { "Content-Type": "application/json" });
      return res.end(JSON.stringify({ errors: [{ message: "Authentication failed" }] }));
    }
    const start = Number(url.searchParams.get("start") ?? 0);
    const limit = Math.min(1000, Number(url.searchParams.get("limit") ?? 25));
    const page = (all) => {
      const values = all.slice(start, start + limit);
      const last = start + values.length >= all.length;
      return { size: values.length, limit, start, isLastPage: last, ...(last ? {} : { nextPageStart: start + values.length }), values };
    };
    let body;
    if (url.pathname === "/rest/api/latest/projects") body = page([{ id: 1, key: "BF", name: "Bench farm", public: false, type: "NORMAL" }]);
    else if (url.pathname === "/rest/api/latest/projects/BF/repos") {
      body = page(names.map((n, i) => ({ id: i + 1, slug: n, name: n, public: false, links: { clone: [{ name: "http", href: gitServer.url(`${n}.git`).replace(/\/\/[^@]*@/, "//") }] } })));
    } else if (url.pathname === "/rest/mirroring/latest/repos" && published) {
      fixture.hashListings++;
      body = page(published.map(({ id, hash }) => ({ id, slug: `repo-${id}`, name: `repo-${id}`, properties: { contentHash: hash, metadataHash: hash } })));
    } else {
      res.writeHead(404);
      return res.end();
    }
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(JSON.stringify(body));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return Object.assign(fixture, {
    url: `http://127.0.0.1:${server.address().port}`,
    publish: (list) => (published = list),
    close: () => new Promise((r) => server.close(r)),
  });
}

execFileSync("cargo", ["build", "-q", "--profile", "native", "-p", "mirrorfarm-runner"], { cwd: ROOT, stdio: "inherit" });
template();
const names = Array.from({ length: REPOS }, (_, i) => `repo-${String(i).padStart(4, "0")}`);
for (const n of names) cpSync(served("template"), served(n), { recursive: true });
const gitServer = await startGitServer({ root: path.join(dir, "served"), username: "x-token-auth", password: TOKEN });
const upstream = await bitbucketUpstream(gitServer, names);
let worker, polled;
try {
  worker = await startWorker({ allowedHosts: "127.0.0.1" });
  const call = client(worker.url);
  const as = (method, url, json) => call(method, url, { token: worker.adminToken, json });
  const nodeToken = (await as("POST", "/rest/mirrorfarm/1.0/nodes", { name: "bench-farm" })).body.token;
  const node = startNode(worker, nodeToken, "node", ["--serve", "127.0.0.1:0"]);
  await sleep(500);
  // 1. Discovery and first sync of REPOS repositories, against git clone --mirror one after another.
  if (ONLY.includes("discovery")) {
  const byHand = Date.now();
  for (const n of names) await run("git", ["clone", "-q", "--mirror", gitServer.url(`${n}.git`), path.join(dir, "by-hand", `${n}.git`)], { env: gitEnv });
  const handMs = Date.now() - byHand;
  // The floor on this machine: the same clones, CONCURRENCY at a time, with no edge or node.
  const parallel = Date.now();
  let nextClone = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (nextClone < names.length) {
        const n = names[nextClone++];
        await run("git", ["clone", "-q", "--mirror", gitServer.url(`${n}.git`), path.join(dir, "parallel", `${n}.git`)], { env: gitEnv });
      }
    }),
  );
  const parallelMs = Date.now() - parallel;
  const started = Date.now();
  const added = await as("POST", "/rest/mirrorfarm/1.0/upstreamServers", { baseUrl: upstream.url, type: "bitbucket", token: TOKEN });
  if (added.status !== 201) throw new Error(added.text);
  const progress = `/rest/mirroring/1.0/upstreamServers/${added.body.id}/progress`;
  await until(async () => {
    const p = (await as("GET", progress)).body;
    return !p.discovering && p.totalRepos === REPOS && p.syncedRepos === REPOS;
  }, "every repository synced");
  const farmMs = Date.now() - started;
  const ratio1 = farmMs / handMs;
  console.log(`discovery + first sync of ${REPOS} repositories (node concurrency ${CONCURRENCY}): ${secs(farmMs)}, ${(REPOS / (farmMs / 1000)).toFixed(1)} repos/s`);
  console.log(`  git clone --mirror of the same ${REPOS}, one after another: ${secs(handMs)}, ${(REPOS / (handMs / 1000)).toFixed(1)} repos/s`);
  console.log(`  ratio ${ratio1.toFixed(2)}× (target ≤ 0.6×: ${verdict(ratio1 <= 0.6)})`);
  console.log(`  floor: the same clones ${CONCURRENCY} at a time, no edge or node: ${secs(parallelMs)} (${(parallelMs / handMs).toFixed(2)}× one after another)`);
  record(`farm discovery + first sync of ${REPOS} vs git clone --mirror one by one`, farmMs / 1000, "s", handMs / 1000, "≤ 0.6×", ratio1 <= 0.6);
  }

  // 3. A clone from the node against a clone from git daemon, of a repository with COMMITS commits.
  if (ONLY.includes("clone")) {
  bigRepo("big", COMMITS);
  await as("POST", "/rest/api/1.0/projects", { key: "BIG", name: "Big" });
  const big = (await as("POST", "/rest/api/1.0/projects/BIG/repos", { name: "big", upstreamUrl: gitServer.url("big.git") })).body;
  await as("POST", `/rest/mirrorfarm/1.0/repos/${big.id}/sync`);
  let href;
  await until(async () => {
    href = (await as("GET", "/rest/api/1.0/projects/BIG/repos/big")).body.links.clone.find((l) => l.name === "http")?.href;
    return Boolean(href);
  }, "the node serving the big repository");
  const nodeUrl = href.replace("http://", `http://x-token-auth:${worker.adminToken}@`);
  const daemonPort = await freePort();
  const daemon = spawn("git", ["daemon", "--reuseaddr", "--export-all", `--base-path=${path.join(dir, "served")}`, `--port=${daemonPort}`, "--listen=127.0.0.1"], { stdio: "ignore" });
  children.push(daemon);
  await until(async () => run("git", ["ls-remote", `git://127.0.0.1:${daemonPort}/big.git`], { env: gitEnv }).then(() => true, () => false), "git daemon");
  const fromNode = [];
  const fromDaemon = [];
  // What smart HTTP itself costs: the same repository as git daemon serves, through `git
  // http-backend` behind this script's own HTTP server (no edge, no node).
  const overHttp = [];
  const sources = [
    [nodeUrl, fromNode, "node"],
    [`git://127.0.0.1:${daemonPort}/big.git`, fromDaemon, "daemon"],
    [gitServer.url("big.git"), overHttp, "http"],
  ];
  for (let i = 0; i < RUNS; i++) {
    for (const [url, into, name] of sources) {
      const target = path.join(dir, `clone-${i}-${name}`);
      const t = Date.now();
      await run("git", ["clone", "-q", "--mirror", url, target], { env: gitEnv });
      into.push(Date.now() - t);
      rmSync(target, { recursive: true, force: true });
    }
  }
  const ratio3 = median(fromNode) / median(fromDaemon);
  console.log(`clone of ${COMMITS} commits from the farm node: median ${median(fromNode)} ms; from git daemon: ${median(fromDaemon)} ms (${RUNS} runs each)`);
  console.log(`  ratio ${ratio3.toFixed(2)}× (target ≤ 1.05×: ${verdict(ratio3 <= 1.05)})`);
  console.log(`  floor for smart HTTP: the same repository through git http-backend, no edge or node: median ${median(overHttp)} ms (${(median(overHttp) / median(fromDaemon)).toFixed(2)}× git daemon)`);
  record(`clone of ${COMMITS} commits from a farm node vs git daemon`, median(fromNode), "ms", median(fromDaemon), "≤ 1.05×", ratio3 <= 1.05);
  if (process.env.BENCH_RUNNER_LOG) console.log(node.log().slice(-4000));
  }

  // 2. A poll of POLLED unchanged farm repositories on one node (a Worker of its own each time,
  // seeded with farm repositories whose recorded hashes and fingerprints match their upstreams):
  // first by the upstream's published content hashes (one paged listing), then, for an upstream
  // that publishes none, by listing each repository's refs. The floor of the second: the same
  // `git ls-remote`s at the node's concurrency, with no edge at all.
  if (ONLY.includes("poll")) {
  const print = fingerprint(served("template"));
  for (let i = REPOS; i < POLLED; i++) cpSync(served("template"), served(`repo-${String(i).padStart(4, "0")}`), { recursive: true });
  // The upstream publishes the same hash for each (its own copies' hash; any text the upstream
  // chooses would do, the farm only compares it with the one it last synced to).
  upstream.publish(Array.from({ length: POLLED }, (_, i) => ({ id: i + 1, hash: print })));
  // Served by git daemon: the upstream's own CPU is not the farm's in production, and on these two
  // cores a smart-HTTP fixture (node, http-backend, upload-pack per request) would cost more than
  // the node and the edge together (35 ms of CPU per listing, measured).
  const pollPort = await freePort();
  const pollDaemon = spawn("git", ["daemon", "--reuseaddr", "--export-all", `--base-path=${path.join(dir, "served")}`, `--port=${pollPort}`, "--listen=127.0.0.1", "--max-connections=64"], { stdio: "ignore" });
  children.push(pollDaemon);
  await until(async () => run("git", ["ls-remote", `git://127.0.0.1:${pollPort}/template.git`], { env: gitEnv }).then(() => true, () => false), "git daemon");
  const plain = `git://127.0.0.1:${pollPort}`;
  const seedSql = (publishes) => `
    INSERT INTO projects (id, key, name, public, created_at) VALUES (1000, 'POLL', 'Poll', 0, 0);
    INSERT INTO upstream_servers (id, type, base_url, api_base_url, state, mode, last_discovery, created_at, publishes_hashes)
      VALUES ('bench', 'bitbucket', '${upstream.url}', '${upstream.url}', 'INSTALLED', 'ALL_PROJECTS', 9999999999999, 0, ${publishes});
    WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ${POLLED})
      INSERT INTO repositories (id, project_id, slug, name, default_branch, public, forkable, upstream_url, upstream_url_masked,
        hierarchy_id, created_at)
      SELECT i + 1, 1000, printf('repo-%04d', i), printf('repo-%04d', i), 'main', 0, 1, printf('${plain}/repo-%04d.git', i),
        printf('${plain}/repo-%04d.git', i), lower(hex(randomblob(10))), 0 FROM n;
    INSERT INTO farm_repositories (repository_id, upstream_id, external_repo_id, external_project_id, initial_sync, last_sync,
        upstream_content_hash)
      SELECT id, 'bench', id, '1', 1, 1, '${print}' FROM repositories;
    INSERT INTO repository_triggers (repository_id, upstream_fingerprint, last_polled_at) SELECT id, '${print}', 0 FROM repositories;
  `;
  const pollOnce = async (byHash) => {
    polled = await startWorker({ allowedHosts: "127.0.0.1", pollIntervalMs: 60_000, seedSql: seedSql(byHash ? 1 : 0) });
    const pcall = client(polled.url);
    const pas = (method, url, json) => pcall(method, url, { token: polled.adminToken, json });
    const pollToken = (await pas("POST", "/rest/mirrorfarm/1.0/nodes", { name: "bench-poll" })).body.token;
    const pollNode = startNode(polled, pollToken, byHash ? "hash-poll-node" : "ref-poll-node", [], "info");
    await sleep(1000);
    const listedBefore = upstream.hashListings;
    const pollStart = Date.now();
    // One run of the cron queues the upstream's poll: one job, by hash or by refs.
    await fetch(`${polled.url}/__scheduled`);
    const server = async () => (await pas("GET", "/rest/mirroring/1.0/upstreamServers/bench")).body;
    const queueEmpty = async () => (await pas("GET", "/rest/mirroring/1.0/supportInfo/refChangesQueue/count")).body === 0;
    const listedAt = async () => (await server())[byHash ? "hashesListedAt" : "refsListedAt"] ?? 0;
    await until(async () => (await listedAt()) >= pollStart && (await queueEmpty()), "every poll done");
    const pollMs = Date.now() - pollStart;
    // Repositories found unchanged: by a pull's own comparison, or by the upstream's ref poll
    // (whose listing queued no pull: no repository was leased).
    const log = pollNode.log().replace(/\x1b\[[0-9;]*m/g, "");
    const pulled = (log.match(/ leased .*target=POLL\//g) ?? []).length;
    const refPolled = [...log.matchAll(/listed the upstream's refs .*repositories=(\d+) listed=(\d+)/g)].reduce((n, m) => n + Number(m[2]), 0);
    const unchanged = (log.match(/upstream unchanged/g) ?? []).length + (pulled === 0 ? refPolled : 0);
    const pages = upstream.hashListings - listedBefore;
    if (process.env.BENCH_POLL_LOG) writeFileSync(`${process.env.BENCH_POLL_LOG}-${byHash ? "hash" : "refs"}.log`, pollNode.log());
    pollNode.child.kill("SIGTERM");
    await polled.stop();
    polled = undefined;
    return { pollMs, unchanged, pages };
  };
  const byHash = process.env.BENCH_POLL_REFS_ONLY ? { pollMs: 0, unchanged: 0, pages: 0 } : await pollOnce(true);
  const byRefs = await pollOnce(false);
  // The floor of a poll by refs: the same ls-remotes, CONCURRENCY at a time, nothing else.
  const floorStart = Date.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < POLLED) {
        const i = next++;
        await run("git", ["ls-remote", `${plain}/repo-${String(i).padStart(4, "0")}.git`], { env: gitEnv });
      }
    }),
  );
  const floorMs = Date.now() - floorStart;
  if (process.env.BENCH_FARM_CPU) {
    // Where the CPU went: each long-lived process's own time and its waited-for children's.
    for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
        const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        const [u, sy, cu, cs] = [f[11], f[12], f[13], f[14]].map(Number);
        if (u + sy + cu + cs > 100) console.log(`  cpu ${name} (${pid}): own ${((u + sy) / 100).toFixed(1)} s, children ${((cu + cs) / 100).toFixed(1)} s`);
      } catch {}
    }
  }
  console.log(`poll of ${POLLED} unchanged farm repositories by the upstream's content hashes: ${secs(byHash.pollMs)} (${byHash.pages} page(s) listed, ${byHash.unchanged} repositories polled by refs; target ≤ 2 s: ${verdict(byHash.pollMs <= 2_000 && byHash.unchanged === 0)})`);
  console.log(`poll of ${POLLED} unchanged farm repositories by their refs (one job; the node lists them ${CONCURRENCY} at a time): ${secs(byRefs.pollMs)}, ${(POLLED / (byRefs.pollMs / 1000)).toFixed(0)} polls/s; ${byRefs.unchanged} found unchanged, nothing fetched (target ≤ 10 s: ${verdict(byRefs.pollMs <= 10_000 && byRefs.unchanged === POLLED)})`);
  console.log(`  floor: the same ${POLLED} git ls-remotes, ${CONCURRENCY} at a time, no edge: ${secs(floorMs)} (the poll is ${(byRefs.pollMs / floorMs).toFixed(2)}× it)`);
  record("farm poll of 1,000 unchanged, by content hash", byHash.pollMs / 1000, "s", null, "≤ 2 s", byHash.pollMs <= 2_000);
  record("farm poll of 1,000 unchanged, by refs", byRefs.pollMs / 1000, "s", floorMs / 1000, "≤ 10 s", byRefs.pollMs <= 10_000);
  }
} finally {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGTERM");
  await sleep(300);
  await upstream.close();
  await gitServer.close();
  await worker?.stop();
  await polled?.stop();
  rmSync(dir, { recursive: true, force: true });
}
