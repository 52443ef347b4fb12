// SSH end to end: users' keys through Bitbucket's and GitLab's key APIs, then `git clone` over SSH
// from a farm node (its russh server) with a registered key, refused for a key nobody registered,
// for a user without REPO_READ and for anything but upload-pack. No secret (a private key, a
// token) shows in a response or in the node's log.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startWorker, client } from "../support/worker.mjs";
import { startGitServer } from "../support/git_http.mjs";
import { startNode } from "../support/node.mjs";
import { contentHash, git, gitEnv } from "../support/git.mjs";

const run = promisify(execFile);
const API = "/rest/mirrorfarm/1.0";
const USER = "ssh-bot";
const PASS = "ssh-http-pa55";

let dir, gitServer, worker, call, admin, node, repoId;
const tokens = {};
const keys = {};
const responses = [];

const as = (token) => async (method, url, opts = {}) => {
  const r = await call(method, url, { token, ...opts });
  responses.push(r.text);
  return r;
};

/** An Ed25519 key pair made by ssh-keygen: its files, public line and fingerprint. */
function keyPair(name) {
  const file = path.join(dir, "keys", name);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `${name}@e2e`, "-f", file]);
  const pub = readFileSync(`${file}.pub`, "utf8").trim();
  const fingerprint = execFileSync("ssh-keygen", ["-l", "-E", "sha256", "-f", `${file}.pub`]).toString().split(" ")[1];
  const secret = readFileSync(file, "utf8").split("\n").filter((l) => l && !l.startsWith("-----")).join("");
  return { file, pub, fingerprint, secret };
}

async function waitFor(pred, what, ms = 30_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${node?.log().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Runs `git clone` over SSH with `key` (the node's host key pinned); resolves to {ok, stderr}. */
async function sshClone(url, key, target) {
  const command = sshCommand(key);
  try {
    await run("git", ["clone", "-q", "--mirror", url, target], { env: { ...gitEnv, GIT_SSH_COMMAND: command } });
    return { ok: true, stderr: "" };
  } catch (e) {
    return { ok: false, stderr: String(e.stderr) };
  }
}

function sshCommand(key) {
  const known = path.join(dir, "known_hosts");
  return `ssh -i ${key.file} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=${known}`;
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-ssh-e2e-"));
  for (const d of ["served", "keys", "work"]) mkdirSync(path.join(dir, d));
  const work = path.join(dir, "work", "up");
  execFileSync("git", ["init", "-q", "-b", "main", work], { env: gitEnv });
  execFileSync("git", ["init", "-q", "--bare", path.join(dir, "served", "upstream.git")], { env: gitEnv });
  writeFileSync(path.join(work, "file.txt"), "over ssh\n");
  git(work, "add", "file.txt");
  git(work, "commit", "-q", "-m", "first");
  git(work, "branch", "feature");
  git(work, "tag", "-a", "v1", "-m", "release 1");
  git(work, "push", "-q", path.join(dir, "served", "upstream.git"), "main", "feature", "v1");
  gitServer = await startGitServer({ root: path.join(dir, "served"), username: USER, password: PASS });
  worker = await startWorker({ allowedHosts: "127.0.0.1", retryBaseMs: 200, pollIntervalMs: 0 });
  call = client(worker.url);
  admin = as(worker.adminToken);
  assert.equal((await admin("POST", "/rest/api/1.0/projects", { json: { key: "SSH", name: "Over SSH" } })).status, 201);
  const repo = await admin("POST", "/rest/api/1.0/projects/SSH/repos", { json: { name: "app", upstreamUrl: gitServer.url("upstream.git") } });
  assert.equal(repo.status, 201, repo.text);
  repoId = repo.body.id;
  for (const name of ["alice", "bob"]) {
    assert.equal((await admin("POST", `/rest/api/1.0/admin/users?name=${name}`)).status, 204);
    const t = await admin("PUT", `/rest/access-tokens/1.0/users/${name}`, { json: { name: "ssh" } });
    tokens[name] = t.body.token;
  }
  const grant = await admin("PUT", "/rest/api/1.0/projects/SSH/repos/app/permissions/users?name=alice&permission=REPO_READ");
  assert.equal(grant.status, 204);
  for (const name of ["alice", "bob", "stranger"]) keys[name] = keyPair(name);
  const nodeToken = (await admin("POST", `${API}/nodes`, { json: { name: "ssh-node" } })).body.token;
  tokens.node = nodeToken;
  node = startNode({
    edgeUrl: worker.url,
    token: nodeToken,
    dataDir: path.join(dir, "node"),
    name: "ssh-node",
    args: ["--serve", "127.0.0.1:0", "--ssh-serve", "127.0.0.1:0", "--heartbeat-secs", "1"],
  });
});

after(async () => {
  await node?.stop();
  await gitServer?.close();
  await worker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("keys through both APIs: the same row, OpenSSH fingerprints, one owner per key", async () => {
  const alice = as(tokens.alice);
  const bob = as(tokens.bob);
  const added = await alice("POST", "/rest/ssh/1.0/keys", { json: { text: keys.alice.pub, label: "laptop" } });
  assert.equal(added.status, 200, added.text);
  assert.equal(added.body.fingerprint, keys.alice.fingerprint);
  assert.equal(added.body.algorithmType, "ED25519");
  assert.equal(added.body.bitLength, 256);
  const listed = await alice("GET", "/api/v4/user/keys");
  assert.deepEqual(listed.body.map((k) => [k.id, k.title, k.key, k.fingerprint_sha256]), [[added.body.id, "laptop", keys.alice.pub, keys.alice.fingerprint]]);

  const made = await bob("POST", "/api/v4/user/keys", { json: { title: "bob's", key: keys.bob.pub } });
  assert.equal(made.status, 201, made.text);
  const taken = await bob("POST", "/api/v4/user/keys", { json: { title: "again", key: keys.alice.pub } });
  assert.deepEqual([taken.status, taken.body], [400, { message: { fingerprint_sha256: ["has already been taken"] } }]);
  const clash = await bob("POST", "/rest/ssh/1.0/keys", { json: { text: keys.alice.pub } });
  assert.equal(clash.status, 409);
  assert.ok(clash.body.errors[0].message);
  const bad = await bob("POST", "/rest/ssh/1.0/keys", { json: { text: "ssh-ed25519 not-base64!" } });
  assert.deepEqual([bad.status, bad.body.errors[0].context], [400, "text"]);
  // Another user's keys: administrators only (Bitbucket's 401 for a signed-in caller without it).
  assert.equal((await bob("GET", "/rest/ssh/1.0/keys?user=alice")).status, 401);
  const page = await admin("GET", "/rest/ssh/1.0/keys?user=alice");
  assert.deepEqual(page.body.values.map((k) => k.label), ["laptop"]);
  assert.equal((await bob("DELETE", `/rest/ssh/1.0/keys/${added.body.id}`)).status, 404);
});

test("git clone over SSH from the node: the content equals upstream's; others are refused", { timeout: 120_000 }, async () => {
  const queued = await admin("POST", `${API}/repos/${repoId}/sync`);
  assert.equal(queued.status, 202, queued.text);
  // Offered once the node's copy is current and its heartbeat named its SSH server.
  const sshHref = await waitFor(async () => {
    const r = await admin("GET", "/rest/api/1.0/projects/SSH/repos/app");
    return r.body.links.clone.find((l) => l.name === "ssh")?.href;
  }, "an ssh clone link");
  assert.match(sshHref, /^ssh:\/\/git@127\.0\.0\.1:\d+\/ssh\/app\.git$/);
  const port = new URL(sshHref).port;
  // The node's host key, as the node made it in its data directory, pinned for the clients.
  const hostKey = execFileSync("ssh-keygen", ["-y", "-f", path.join(dir, "node", "ssh_host_ed25519_key")]).toString().trim();
  writeFileSync(path.join(dir, "known_hosts"), `[127.0.0.1]:${port} ${hostKey}\n`);

  const cloned = path.join(dir, "alice.git");
  const ok = await sshClone(sshHref, keys.alice, cloned);
  assert.ok(ok.ok, ok.stderr + node.log().slice(-2000));
  assert.equal(contentHash(cloned), contentHash(path.join(dir, "served", "upstream.git")));
  // Protocol v2 too, and the short path form.
  const v2 = path.join(dir, "alice-v2.git");
  const short = `ssh://git@127.0.0.1:${port}/SSH/app`;
  await run("git", ["-c", "protocol.version=2", "clone", "-q", "--mirror", short, v2], { env: { ...gitEnv, GIT_SSH_COMMAND: sshCommand(keys.alice) } });
  assert.equal(contentHash(v2), contentHash(cloned));

  const stranger = await sshClone(sshHref, keys.stranger, path.join(dir, "stranger.git"));
  assert.equal(stranger.ok, false);
  assert.match(stranger.stderr, /not registered/);
  const bob = await sshClone(sshHref, keys.bob, path.join(dir, "bob.git"));
  assert.equal(bob.ok, false);
  assert.match(bob.stderr, /not found, or you may not read it/);

  // Only upload-pack runs: a push, a shell or another program are refused with a clear message.
  const ssh = (...args) =>
    run("ssh", ["-i", keys.alice.file, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", `UserKnownHostsFile=${path.join(dir, "known_hosts")}`, "-p", port, "-T", "git@127.0.0.1", ...args])
      .then(() => "", (e) => String(e.stderr));
  assert.match(await ssh("git-receive-pack 'SSH/app.git'"), /read-only mirror/);
  assert.match(await ssh("sh -c id"), /only git-upload-pack/);
  assert.match(await ssh(), /no shell/);
  const push = await run("git", ["-C", cloned, "push", sshHref, "main:refs/heads/pushed"], { env: { ...gitEnv, GIT_SSH_COMMAND: sshCommand(keys.alice) } }).then(() => "", (e) => String(e.stderr));
  assert.match(push, /read-only mirror/);

  // A removed key signs nobody in, at once (the node asks the edge on every SSH clone).
  const mine = await as(tokens.alice)("GET", "/rest/ssh/1.0/keys");
  assert.equal((await as(tokens.alice)("DELETE", `/rest/ssh/1.0/keys/${mine.body.values[0].id}`)).status, 204);
  const revoked = await sshClone(sshHref, keys.alice, path.join(dir, "revoked.git"));
  assert.equal(revoked.ok, false);
  assert.match(revoked.stderr, /not registered/);

  // No secret in any answer or in the node's log.
  const everything = responses.join("\n") + node.log();
  for (const k of Object.values(keys)) assert.ok(!everything.includes(k.secret.slice(0, 40)), "a private key leaked");
  for (const t of [tokens.alice, tokens.bob, tokens.node]) assert.ok(!node.log().includes(t), "a token leaked into the node's log");
});

// ---- SSH-key push mirrors against a real OpenSSH server ----

let sshd = null;

/** Starts Debian's sshd on `port` as an unprivileged configuration of the test's own: its host
 * key, `authorized_keys` in the test's directory, no PAM, no passwords. */
async function startSshd(port, hostKey) {
  const base = path.join(dir, "sshd");
  mkdirSync(base, { recursive: true });
  mkdirSync("/run/sshd", { recursive: true }); // privilege separation directory sshd insists on
  const config = path.join(base, "sshd_config");
  writeFileSync(config, [
    `Port ${port}`,
    "ListenAddress 127.0.0.1",
    `HostKey ${hostKey}`,
    `AuthorizedKeysFile ${path.join(base, "authorized_keys")}`,
    `PidFile ${path.join(base, "sshd.pid")}`,
    "StrictModes no",
    "UsePAM no",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "PermitRootLogin prohibit-password",
    "",
  ].join("\n"));
  const { spawn } = await import("node:child_process");
  const child = spawn("/usr/sbin/sshd", ["-D", "-e", "-f", config], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stderr.on("data", (d) => (log += d));
  child.stdout.on("data", (d) => (log += d));
  // Listening once a TCP connection is taken.
  const { createConnection } = await import("node:net");
  await waitFor(() => new Promise((r) => {
    const s = createConnection({ host: "127.0.0.1", port }, () => { s.destroy(); r(true); });
    s.on("error", () => r(false));
  }), `sshd on ${port}: ${log}`);
  return { child, log: () => log, stop: () => new Promise((r) => { if (child.exitCode !== null) return r(); child.once("exit", r); child.kill("SIGTERM"); }) };
}

after(async () => {
  await sshd?.stop();
});

test("an SSH-key push mirror pushes into a real sshd, learns its host key, and stops on a changed one", { timeout: 180_000 }, async () => {
  const { freePort } = await import("../support/worker.mjs");
  const port = await freePort();
  const hostKeys = ["host1", "host2"].map((n) => {
    const file = path.join(dir, "keys", `sshd_${n}`);
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", n, "-f", file]);
    return { file, fingerprint: execFileSync("ssh-keygen", ["-l", "-E", "sha256", "-f", `${file}.pub`]).toString().split(" ")[1], pub: readFileSync(`${file}.pub`, "utf8").trim() };
  });
  const target = path.join(dir, "ssh-target.git");
  execFileSync("git", ["init", "-q", "--bare", target], { env: gitEnv });
  sshd = await startSshd(port, hostKeys[0].file);
  const user = (await import("node:os")).userInfo().username;
  const url = `ssh://${user}@127.0.0.1:${port}${target}`;

  // A password mirror has no public key (404, as GitLab).
  const plain = await admin("POST", `/api/v4/projects/${repoId}/remote_mirrors`, { json: { url: "https://example.com/x.git" } });
  assert.equal((await admin("GET", `/api/v4/projects/${repoId}/remote_mirrors/${plain.body.id}/public_key`)).status, 404);
  // SSH keys need an ssh:// URL; known hosts must read.
  const wrong = await admin("POST", `/api/v4/projects/${repoId}/remote_mirrors`, { json: { url: "https://example.com/x.git", auth_method: "ssh_public_key" } });
  assert.equal(wrong.status, 400);
  assert.ok(wrong.body.message.auth_method, wrong.text);

  const made = await admin("POST", `/api/v4/projects/${repoId}/remote_mirrors`, { json: { url, auth_method: "ssh_public_key", enabled: false } });
  assert.equal(made.status, 201, made.text);
  assert.equal(made.body.auth_method, "ssh_public_key");
  assert.deepEqual(made.body.host_keys, []);
  const mirrorId = made.body.id;
  const key = await admin("GET", `/api/v4/projects/${repoId}/remote_mirrors/${mirrorId}/public_key`);
  assert.equal(key.status, 200, key.text);
  assert.match(key.body.public_key, /^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]+=* ?/);
  writeFileSync(path.join(dir, "sshd", "authorized_keys"), `${key.body.public_key}\n`);
  // The same key on every read: generated once, sealed with the mirror.
  assert.equal((await admin("GET", `/api/v4/projects/${repoId}/remote_mirrors/${mirrorId}/public_key`)).body.public_key, key.body.public_key);

  const mirror = async () => (await admin("GET", `/api/v4/projects/${repoId}/remote_mirrors/${mirrorId}`)).body;
  assert.equal((await admin("PUT", `/api/v4/projects/${repoId}/remote_mirrors/${mirrorId}`, { json: { enabled: true } })).status, 200);
  assert.equal((await admin("POST", `/api/v4/projects/${repoId}/remote_mirrors/${mirrorId}/sync`)).status, 204);
  const done = await waitFor(async () => {
    const m = await mirror();
    return ["finished", "failed"].includes(m.update_status) && m;
  }, "the first SSH push", 60_000);
  assert.equal(done.update_status, "finished", `${done.last_error}\n${sshd.log()}`);
  assert.equal(contentHash(target), contentHash(path.join(dir, "served", "upstream.git")));
  // The host key the node saw on first use, kept as GitLab shows host keys.
  assert.deepEqual(done.host_keys, [{ fingerprint_sha256: hostKeys[0].fingerprint }]);

  // Known hosts given up front are used as given (StrictHostKeyChecking=yes).
  const pinnedTarget = path.join(dir, "ssh-pinned.git");
  execFileSync("git", ["init", "-q", "--bare", pinnedTarget], { env: gitEnv });
  const pinned = await admin("POST", `/api/v4/projects/${repoId}/remote_mirrors`, {
    json: { url: `ssh://${user}@127.0.0.1:${port}${pinnedTarget}`, auth_method: "ssh_public_key", enabled: true, ssh_known_hosts: `[127.0.0.1]:${port} ${hostKeys[0].pub}` },
  });
  assert.equal(pinned.status, 201, pinned.text);
  assert.deepEqual(pinned.body.host_keys, [{ fingerprint_sha256: hostKeys[0].fingerprint }]);
  const pinnedKey = (await admin("GET", `/api/v4/projects/${repoId}/remote_mirrors/${pinned.body.id}/public_key`)).body.public_key;
  assert.notEqual(pinnedKey, key.body.public_key, "each mirror has a key pair of its own");
  writeFileSync(path.join(dir, "sshd", "authorized_keys"), `${key.body.public_key}\n${pinnedKey}\n`);
  assert.equal((await admin("POST", `/api/v4/projects/${repoId}/remote_mirrors/${pinned.body.id}/sync`)).status, 204);
  const pinnedDone = await waitFor(async () => {
    const m = (await admin("GET", `/api/v4/projects/${repoId}/remote_mirrors/${pinned.body.id}`)).body;
    return ["finished", "failed"].includes(m.update_status) && m;
  }, "the pinned push", 60_000);
  assert.equal(pinnedDone.update_status, "finished", pinnedDone.last_error);
  assert.equal((await admin("DELETE", `/api/v4/projects/${repoId}/remote_mirrors/${pinned.body.id}`)).status, 204);

  // The target's host key changes: the push fails, naming the fingerprint it saw.
  await sshd.stop();
  sshd = await startSshd(port, hostKeys[1].file);
  const work = path.join(dir, "work", "up");
  writeFileSync(path.join(work, "file.txt"), "changed\n");
  git(work, "commit", "-q", "-am", "second");
  git(work, "push", "-q", path.join(dir, "served", "upstream.git"), "main");
  assert.equal((await admin("POST", `/api/v4/projects/${repoId}/remote_mirrors/${mirrorId}/sync`)).status, 204);
  const failed = await waitFor(async () => {
    const m = await mirror();
    return m.last_error && m.update_status !== "started" && m;
  }, "the push to a changed host key", 60_000);
  assert.equal(failed.update_status, "failed", "not retried: the same key would be met again");
  assert.match(failed.last_error, /host key has changed/i);
  assert.ok(failed.last_error.includes(hostKeys[1].fingerprint), failed.last_error);
  assert.deepEqual(failed.host_keys, [{ fingerprint_sha256: hostKeys[0].fingerprint }], "the known host key is kept");
  assert.notEqual(contentHash(target), contentHash(path.join(dir, "served", "upstream.git")), "nothing was pushed");

  // No private key or seed in any answer or in the node's log.
  const everything = responses.join("\n") + node.log();
  assert.ok(!/PRIVATE KEY|privateSeed/.test(everything), "a secret leaked");
});
