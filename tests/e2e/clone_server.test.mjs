// Hostile input against a farm node's clone server (hyper): path traversal, a huge request head,
// a slow client, and a body past the limit; each is refused cleanly and the server keeps serving
// clones afterwards.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { startWorker, client } from "../support/worker.mjs";
import { startGitServer } from "../support/git_http.mjs";
import { git, gitEnv } from "../support/git.mjs";
import { buildNode, startNode } from "../support/node.mjs";

let worker, call, admin, gitServer, dir, node, cloneBase;
const basic = () => "Basic " + Buffer.from(`admin:${admin}`).toString("base64");

/** Sends raw bytes and collects the answer until the server closes or `ms` pass. */
function raw(url, bytes, { ms = 15_000, keepOpen = false } = {}) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const started = Date.now();
    let answer = "";
    const socket = net.connect(Number(port), hostname, () => socket.write(bytes));
    const done = (how) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ answer, how, ms: Date.now() - started });
    };
    const timer = setTimeout(() => done("timeout"), ms);
    socket.on("data", (d) => (answer += d.toString("latin1")));
    socket.on("end", () => done("closed"));
    socket.on("error", () => done("error"));
    if (!keepOpen) socket.on("close", () => done("closed"));
  });
}

before(async () => {
  buildNode();
  dir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-clone-server-"));
  const upstream = path.join(dir, "served", "app.git");
  execFileSync("git", ["init", "-q", "--bare", "-b", "main", upstream], { env: gitEnv });
  const work = path.join(dir, "work");
  execFileSync("git", ["clone", "-q", upstream, work], { env: gitEnv });
  git(work, "commit", "-q", "--allow-empty", "-m", "first");
  git(work, "push", "-q", "origin", "main");
  gitServer = await startGitServer({ root: path.join(dir, "served"), username: "bot", password: "hostile-pw-1" });
  worker = await startWorker({ allowedHosts: "127.0.0.1" });
  call = client(worker.url);
  admin = worker.adminToken;
  assert.equal((await call("POST", "/rest/api/1.0/projects", { token: admin, json: { key: "HX", name: "Hostile" } })).status, 201);
  const repo = await call("POST", "/rest/api/1.0/projects/HX/repos", { token: admin, json: { name: "app", upstreamUrl: gitServer.url("app.git") } });
  assert.equal(repo.status, 201, repo.text);
  const token = (await call("POST", "/rest/mirrorfarm/1.0/nodes", { token: admin, json: { name: "hostile-node" } })).body.token;
  node = startNode({ edgeUrl: worker.url, token, dataDir: path.join(dir, "node"), name: "clone-server-node", args: ["--serve", "127.0.0.1:0"] });
  await call("POST", `/rest/mirrorfarm/1.0/repos/${repo.body.id}/sync`, { token: admin });
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && !cloneBase) {
    const r = await call("GET", "/rest/api/1.0/projects/HX/repos/app", { token: admin });
    cloneBase = r.body?.links?.clone?.find((l) => l.name === "http")?.href;
    if (!cloneBase) await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(cloneBase, `the node never served the copy:\n${node.log().slice(-2000)}`);
});

after(async () => {
  await node?.stop();
  await gitServer?.close();
  await worker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("path traversal is refused, never read from disk", async () => {
  const origin = new URL(cloneBase).origin;
  for (const p of [
    "/scm/../../../../etc/passwd",
    "/scm/HX/..%2f..%2f..%2fetc%2fpasswd.git/info/refs?service=git-upload-pack",
    "/scm/HX/%2e%2e.git/info/refs?service=git-upload-pack",
    "/scm/HX/app.git/../../../../etc/passwd",
    "/scm/HX/app.git/objects/info/packs",
    "/scm/HX/app.git/config",
  ]) {
    const r = await raw(origin, `GET ${p} HTTP/1.1\r\nHost: x\r\nAuthorization: ${basic()}\r\nConnection: close\r\n\r\n`);
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(r.answer)?.[1]);
    assert.ok(status === 404 || status === 403 || status === 400, `${p}: ${r.answer.slice(0, 200)}`);
    assert.ok(!r.answer.includes("root:"), `${p} leaked a file`);
  }
});

test("a huge request head is refused with 431 and a slow client is dropped", async () => {
  const origin = new URL(cloneBase).origin;
  const huge = await raw(origin, `GET /scm/HX/app.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\nX-Filler: ${"a".repeat(200_000)}\r\n\r\n`);
  assert.match(huge.answer, /^HTTP\/1\.1 431/, huge.answer.slice(0, 120));
  // Half a request head, then silence: the server closes within its 10 s head timeout.
  const slow = await raw(origin, "GET /scm/HX/app.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\n", { ms: 20_000, keepOpen: true });
  assert.notEqual(slow.how, "timeout", "the server kept a silent client");
  assert.ok(slow.ms >= 9_000 && slow.ms < 20_000, `closed after ${slow.ms} ms`);
  console.log(`slow client dropped after ${slow.ms} ms; 200 KB head answered ${huge.answer.slice(9, 12)}`);
});

test("a body past the limit is refused with 413 before it is read", async () => {
  const url = new URL(`${cloneBase}/git-upload-pack`);
  const head = `POST ${url.pathname} HTTP/1.1\r\nHost: x\r\nAuthorization: ${basic()}\r\nContent-Type: application/x-git-upload-pack-request\r\nContent-Length: ${100 * 1024 * 1024}\r\n\r\n`;
  const r = await raw(url.origin, head + "0000", { ms: 15_000 });
  assert.match(r.answer, /^HTTP\/1\.1 413/, r.answer.slice(0, 200));
  assert.ok(r.ms < 10_000, `answered after ${r.ms} ms`);
});

test("after all that the node still serves a clone", () => {
  const target = path.join(dir, "clone");
  const url = cloneBase.replace("://", `://admin:${admin}@`);
  execFileSync("git", ["clone", "-q", url, target], { env: gitEnv });
  assert.equal(git(target, "log", "-1", "--format=%s"), "first");
});
