// Polls by refs: the farm repositories of an upstream that publishes no content hashes (here a
// GitLab server) are polled by one UPSTREAM_POLL job. A real node lists every repository's refs
// over smart HTTP and reports their fingerprints; the Worker pulls only the repositories whose
// fingerprint moved. Real Worker (workerd, local D1), real node, real git; nothing is mocked.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startWorker, client } from "../support/worker.mjs";
import { startGitServer } from "../support/git_http.mjs";
import { git, contentHash } from "../support/git.mjs";
import { buildNode, startNode } from "../support/node.mjs";

const SLUGS = ["alpha", "beta", "gamma"];
const UP = "/rest/mirroring/1.0/upstreamServers/gl";

let dir, gitServer, worker, call, node;
const served = (slug) => path.join(dir, "served", `${slug}.git`);
const as = (method, url, json) => call(method, url, { token: worker.adminToken, json });

function commit(slug, message) {
  const work = path.join(dir, `work-${slug}`);
  git(work, "commit", "-q", "--allow-empty", "-m", message);
  git(work, "push", "-q", served(slug), "HEAD:refs/heads/main");
}

async function until(what, probe, ms = 30_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    const { ok, value } = await probe();
    if (ok) return value;
    last = value;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`${what}: timed out; last ${JSON.stringify(last)}\nnode log:\n${node?.log().slice(-3000)}`);
}

/** Every pull each farm repository has had, by slug. */
async function pulls() {
  const out = {};
  for (const [i, slug] of SLUGS.entries()) {
    const jobs = (await as("GET", `/rest/mirrorfarm/1.0/repos/${i + 1}/jobs?limit=100`)).body.values;
    out[slug] = jobs.filter((j) => j.kind === "PULL_MIRROR").length;
  }
  return out;
}

/** Runs the cron once the poll interval has passed, and waits for the ref poll and its pulls. */
async function poll() {
  const started = Date.now();
  await new Promise((r) => setTimeout(r, 1100)); // past the 1 s poll interval
  assert.equal((await fetch(`${worker.url}/__scheduled?cron=*+*+*+*+*`)).status, 200);
  return until("the ref poll and its pulls", async () => {
    const server = (await as("GET", UP)).body;
    const queue = (await as("GET", "/rest/mirroring/1.0/supportInfo/refChangesQueue/count")).body;
    return { ok: (server.refsListedAt ?? 0) >= started && queue === 0, value: { server, queue } };
  });
}

before(async () => {
  buildNode();
  dir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-ref-poll-e2e-"));
  for (const slug of SLUGS) {
    git(dir, "init", "-q", "--bare", "-b", "main", served(slug));
    git(dir, "clone", "-q", served(slug), path.join(dir, `work-${slug}`));
    commit(slug, `${slug} 1`);
  }
  gitServer = await startGitServer({ root: path.join(dir, "served"), username: null });
  // A GitLab upstream listed once (its next discovery far off), holding the three repositories.
  const seedSql = `
    INSERT INTO projects (id, key, name, public, created_at) VALUES (100, 'GL', 'GitLab', 0, 0);
    INSERT INTO upstream_servers (id, type, base_url, api_base_url, state, mode, last_discovery, created_at)
      VALUES ('gl', 'gitlab', 'https://gitlab.example', 'https://gitlab.example', 'INSTALLED', 'ALL_PROJECTS', 9999999999999, 0);
    ${SLUGS.map((slug, i) => `
      INSERT INTO repositories (id, project_id, slug, name, default_branch, public, forkable, upstream_url, upstream_url_masked, hierarchy_id, created_at)
        VALUES (${i + 1}, 100, '${slug}', '${slug}', 'main', 0, 1, '${gitServer.url(`${slug}.git`)}', '${gitServer.url(`${slug}.git`)}', 'h${i}', 0);
      INSERT INTO farm_repositories (repository_id, upstream_id, external_repo_id, external_project_id) VALUES (${i + 1}, 'gl', '${i + 1}', '1');`).join("")}
  `;
  worker = await startWorker({ allowedHosts: "127.0.0.1", pollIntervalMs: 1000, seedSql });
  call = client(worker.url);
  const token = (await as("POST", "/rest/mirrorfarm/1.0/nodes", { name: "ref-poll" })).body.token;
  node = startNode({ edgeUrl: worker.url, token, dataDir: path.join(dir, "node"), name: "ref-poll-node" });
});

after(async () => {
  await node?.stop();
  await worker?.stop();
  await gitServer?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("one job lists every repository's refs; only the repositories whose refs moved are pulled", async () => {
  // Nothing pulled yet: no fingerprint recorded, so the first poll pulls all three.
  const first = await poll();
  assert.equal(first.server.publishesContentHashes, undefined, JSON.stringify(first.server));
  assert.deepEqual(await pulls(), { alpha: 1, beta: 1, gamma: 1 });
  assert.match(node.log(), /listed the upstream's refs .*repositories=3 listed=3/);
  assert.match(node.log(), /leased .*target=upstream gl/);

  // Nothing moved: the next poll pulls nothing.
  await poll();
  assert.deepEqual(await pulls(), { alpha: 1, beta: 1, gamma: 1 }, "an unchanged listing pulls nothing");

  // beta moves upstream: the next poll pulls beta alone, and the node's copy follows.
  commit("beta", "beta 2");
  await poll();
  assert.deepEqual(await pulls(), { alpha: 1, beta: 2, gamma: 1 }, "only beta is pulled");
  const want = contentHash(served("beta"));
  await until("the copy of beta follows", async () => {
    const have = contentHash(path.join(dir, "node", "repos", "2.git"));
    return { ok: have === want, value: { have, want } };
  });
  // Every upstream URL was listed by one job: no repository was leased for a poll of its own.
  const log = node.log();
  assert.equal((log.match(/target=GL\/\w+/g) ?? []).length, 4, "3 first pulls and beta's");
});
